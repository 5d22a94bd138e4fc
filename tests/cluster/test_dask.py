"""Tiling and prediction on Dask: by a scheduler's address and as Slurm jobs
(dask-jobqueue's SLURMCluster), equal to the thread runner; a worker killed mid-run; a worker
that runs another Tessera, refused before any task."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from tessera.tasks.cluster import dask as dask_daemons
from tessera.tasks.cluster.cluster import _runner
from tessera.tasks.cluster.processes import free_port, stop
from tessera.tasks.store.reader import TileStore
from tests.cluster.conftest import client_env
from tests.cluster.projects import TESSERA, ok, one_line, scene_project, tessera
from tests.helpers import REPO, TINY_EXPERIMENTS, write_geotiff

pytestmark = pytest.mark.cluster


def _threads_env(env: dict[str, str]) -> dict[str, str]:
    """The same environment without the profile: the thread runner."""
    return {**env, "TESSERA_PROFILE": ""}


def _same_store(a: Path, b: Path) -> None:
    sa, sb = TileStore.open(a), TileStore.open(b)
    pd.testing.assert_frame_equal(sa.index, sb.index)
    assert sa.info == sb.info and len(sa) > 0
    for i in range(len(sa)):
        np.testing.assert_array_equal(sa[i]["image"], sb[i]["image"])


def _maps(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted(folder.glob("*_classes.tif")):
        with rasterio.open(f) as src:
            out[f.name] = src.read()
    return out


@pytest.fixture(scope="module")
def project(cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four scenes, tiled on the thread runner, and a trained seg_ae (here, not on Slurm)."""
    root = scene_project(tmp_path_factory.mktemp("dask"), {"seg": TINY_EXPERIMENTS["tiny-seg"]})
    params = yaml.safe_load((root / "params.yaml").read_text())
    for k in range(1, 4):
        shutil.copy(root / "scene.tif", root / f"scene{k}.tif")
        params["ingest"]["sources"].append(
            {"name": f"scene{k}", "kind": "geotiff", "paths": [f"scene{k}.tif"]}
        )
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = client_env(cluster, profile=False)
    ok(tessera(["ingest"], root, env))
    ok(tessera(["tile", "--set", "tile.out=tiles-threads"], root, env))
    tracking = f"train.tracking_uri=sqlite:///{root / 'mlflow.db'}"
    train = ["train", "--experiment", "seg", "--set", "train.store=tiles-threads"]
    ok(tessera([*train, "--set", tracking], root, env))
    return root


@pytest.mark.long("its setup ingests, tiles and trains the module's project through the CLI")
def test_ingest_tile_and_predict_on_dask_equal_threads(project, cluster_env):
    root = project
    ok(tessera(["ingest", "--set", "ingest.catalog=outputs/dask-catalog.parquet"], root,
               cluster_env))  # fmt: skip
    ok(tessera(["tile", "--set", "tile.catalog=outputs/dask-catalog.parquet",
                "--set", "tile.out=tiles-dask"], root, cluster_env))  # fmt: skip
    _same_store(root / "tiles-dask", root / "tiles-threads")
    ckpt = root / "models" / "seg" / "checkpoints" / "best.ckpt"
    args = [
        "predict",
        "--model",
        ckpt,
        *[a for k in range(4) for a in ("--input", f"scene{k or ''}.tif")],
    ]
    ok(tessera([*args, "--out", "pred-dask"], root, cluster_env))
    ok(tessera([*args, "--out", "pred-threads"], root, _threads_env(cluster_env)))
    dask, threads = _maps(root / "pred-dask"), _maps(root / "pred-threads")
    assert len(dask) == 4 and dask.keys() == threads.keys()
    for name in dask:
        np.testing.assert_array_equal(dask[name], threads[name])


@pytest.fixture
def own_dask(cluster, tmp_path):
    """A scheduler of this test's own and a way to add workers to it (all stopped after)."""
    started = []
    port = free_port()
    started.append(dask_daemons.start_scheduler(tmp_path, port))
    address = f"tcp://127.0.0.1:{port}"

    def add(name: str, env: dict[str, str]):
        d = dask_daemons.start_worker(tmp_path, address, name, env)
        started.append(d)
        return d

    yield address, add
    for d in reversed(started):
        stop(d)


def _busy(address: str, worker_name: str) -> bool:
    """Whether the named worker has a task to run now."""
    from distributed import Client

    with Client(address, timeout=10) as client:
        names = {a: w.get("name") for a, w in client.scheduler_info()["workers"].items()}
        return any(names.get(a) == worker_name and keys for a, keys in client.processing().items())


@pytest.fixture(scope="module")
def big_scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six 1024² 4-band scenes: long enough to kill a worker in the middle."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(3)
    return [
        write_geotiff(folder / f"s{k}.tif", rng.integers(1, 9000, (4, 1024, 1024), np.uint16))
        for k in range(6)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["tile", "predict"])
def test_a_worker_killed_mid_run_still_gives_the_same_result(
    stage, project, big_scenes, cluster_env, own_dask, tmp_path
):
    address, add = own_dask
    add("survivor", cluster_env)
    victim = add("victim", cluster_env)
    # three scenes keep a predicting worker busy long enough to be killed; tiling needs six
    scenes = big_scenes[:3] if stage == "predict" else big_scenes
    args = [stage, *[a for f in scenes for a in ("--input", f)]]
    if stage == "predict":
        args += ["--model", project / "models" / "seg" / "checkpoints" / "best.ckpt"]
    else:
        args += ["--size", 64]
    on_dask = [*args, "--set", f"runner.address={address}", "--out", tmp_path / "dask"]
    proc = subprocess.Popen(  # in the project: the checkpoint's run names its tile store
        [TESSERA, *map(str, on_dask)], cwd=project, env=_threads_env(cluster_env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not _busy(address, "victim"):
        time.sleep(0.2)
    if proc.poll() is not None:
        pytest.fail(f"{stage} finished before a worker could be killed: {proc.stderr.read()}")
    os.killpg(victim.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    ok(tessera([*args, "--out", tmp_path / "threads"], project, _threads_env(cluster_env)))
    if stage == "tile":
        _same_store(tmp_path / "dask", tmp_path / "threads")
    else:
        dask, threads = _maps(tmp_path / "dask"), _maps(tmp_path / "threads")
        assert len(dask) == len(scenes) and dask.keys() == threads.keys()
        for name in dask:
            _same_map(name, dask[name], threads[name], tmp_path)


def _same_map(name: str, dask: np.ndarray, threads: np.ndarray, folder: Path) -> None:
    """Equal maps; else where they differ, and what the run left (to tell a race apart)."""
    differ = np.argwhere(dask != threads)
    if differ.size:
        lo, hi = differ.min(axis=0), differ.max(axis=0)
        left = sorted(p.name for p in (folder / "dask").iterdir())
        logs = {p.name: p.read_text()[-1500:] for p in folder.glob("*.log")}
        pytest.fail(f"{name}: {len(differ)} pixels differ in {lo}..{hi}; left {left}; {logs}")


def test_a_worker_running_another_tessera_is_refused(cluster_env, own_dask, tmp_path):
    address, add = own_dask
    other = tmp_path / "other"
    shutil.copytree(REPO / "tessera", other / "tessera", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    with open(other / "tessera" / "tasks" / "tiling" / "cut.py", "a") as fh:
        fh.write("# another release\n")
    add("good", cluster_env)
    stale = add("stale", {**cluster_env, "PYTHONPATH": str(other)})
    # both joined before the command connects: a worker that joins later is not checked
    dask_daemons.wait_for_workers(address, 2, 60, stale)
    scene = write_geotiff(tmp_path / "s.tif", np.ones((1, 32, 32), np.uint16))
    res = tessera(["tile", "--input", scene, "--set", f"runner.address={address}",
                   "--set", "runner.connect_timeout_s=30"], tmp_path,
                  _threads_env(cluster_env))  # fmt: skip
    line = one_line(res)
    assert "runs Tessera" in line and "install the same Tessera on every worker" in line
    assert not (tmp_path / "tiles").exists()


def test_tiling_on_slurm_jobs_equals_threads(cluster, cluster_env, project, tmp_path):
    profile = tmp_path / "slurm-dask.yaml"
    runner = _runner(Path(cluster.folder), "slurm", None)
    profile.write_text(yaml.safe_dump({"env": cluster.env, "runner": runner}))
    env = {**cluster_env, "TESSERA_PROFILE": str(profile)}
    ok(tessera(["tile", "--set", "tile.out=tiles-slurm"], project, env))
    _same_store(project / "tiles-slurm", project / "tiles-threads")


def test_idle_dask_daemons_are_quiet_unless_the_user_says_otherwise(monkeypatch):
    """The quiet settings are names Dask reads (a misspelt one would do nothing), and a value
    the user set wins."""
    import sys

    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL", "40ms")
    env = dask_daemons._quiet(None)
    assert env["DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL"] == "40ms"
    keys = ["distributed.worker.profile.enabled", "distributed.admin.tick.interval",
            "distributed.admin.system-monitor.interval"]  # fmt: skip
    code = f"import dask, distributed; print([dask.config.get(k) for k in {keys!r}])"
    got = subprocess.run(
        [sys.executable, "-c", code], env=dask_daemons._quiet({}), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert got.stdout.strip() == "[False, '1s', '5s']", got.stderr[-2000:]
