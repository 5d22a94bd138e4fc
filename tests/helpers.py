"""Tiny rasters and volumes with real profiles (CRS, affine, nodata, dtype)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import rasterio
import yaml
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
CONF = Path(__file__).resolve().parent / "conf"  # small experiment configs for tests
UTM16 = "EPSG:32616"
L8_ORIGIN = (452475.0, 3408645.0)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM16,
    transform: Affine | None = None,
    nodata: float | None = None,
    **profile: Any,
) -> Path:
    """Write a (C, H, W) or (H, W) array as a GeoTIFF."""
    arr = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = {
        "driver": "GTiff",
        "count": arr.shape[0],
        "height": arr.shape[1],
        "width": arr.shape[2],
        "dtype": arr.dtype.name,
        "nodata": nodata,
        "transform": transform or Affine(30.0, 0.0, L8_ORIGIN[0], 0.0, -30.0, L8_ORIGIN[1]),
    }
    if crs is not None:
        prof["crs"] = crs
    prof.update(profile)
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(arr)
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write an array as NIfTI with the given affine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def landsat_like(root: Path, h: int = 45, w: int = 50, seed: int = 0) -> dict[str, Path]:
    """A Landsat-8-style band stack: B1..B4 at 30 m, B8 at 15 m, plus a BQA band."""
    rng = np.random.default_rng(seed)
    files = {}
    for b in ("B1", "B2", "B3", "B4"):
        a = rng.integers(5000, 20000, size=(h, w), dtype=np.uint16)
        a[:3, :] = 0  # fill rows at the top
        files[b] = write_geotiff(root / f"l8_{b}.tif", a)
    pan = rng.integers(5000, 20000, size=(2 * h, 2 * w), dtype=np.uint16)
    t15 = Affine(15.0, 0.0, L8_ORIGIN[0], 0.0, -15.0, L8_ORIGIN[1])
    files["B8"] = write_geotiff(root / "l8_B8.tif", pan, transform=t15)
    qa = np.zeros((h, w), dtype=np.uint16)
    qa[:3, :] = 1  # designated fill
    qa[10:20, 10:20] |= 3 << 14  # high-confidence cloud
    qa[25:30, :] |= 2 << 12  # medium cirrus
    qa[35:, 30:] |= 3 << 4  # water
    qa[12:14, 12:14] |= 3 << 4  # water under cloud: cloud wins
    files["BQA"] = write_geotiff(root / "l8_BQA.tif", qa)
    return files


def landsat_qa_source(name: str, band_glob: str, bqa_path: str) -> dict[str, Any]:
    """A Landsat 8 band-stack source whose label comes from the BQA bits (as in params.yaml)."""
    return {
        "name": name,
        "kind": "geotiff",
        "glob": band_glob,
        "band_regex": r"l8_(?P<band>B\d+)\.tif$",
        "resampling": "average",
        "nodata": 0,
        "label": {
            "kind": "qa_bits",
            "path": bqa_path,
            "fill_bit": 0,
            "classes": ["clear", "cloud", "cirrus", "water"],
            "rules": [
                {"class": "cloud", "bits": [14, 15], "min": 2},
                {"class": "cirrus", "bits": [12, 13], "min": 2},
                {"class": "water", "bits": [4, 5], "min": 2},
            ],
        },
    }


def training_dir(
    root: Path, experiments: dict[str, Any], catalogued: bool = False, tracking: bool = True
) -> Path:
    """A labelled 4-band 128² scene (3 classes) tiled into 16-px tiles, and a params.yaml
    with ``experiments`` (2 epochs, batch 8, MLflow in ``root/mlflow.db``).

    ``catalogued``: the scene is the source ``scene`` of ``ingest.sources``, ingested into
    ``outputs/catalog.parquet`` and tiled from there (params mode) rather than ad hoc.
    ``tracking``: False for tests that never read MLflow (``train.tracking_uri: ""``): each of
    their trainings skips MLflow's import, store and logging (measured here on a tiny
    ``tessera train``: 6.6-7.8 CPU-s untracked against 8.0-9.4 into a new sqlite store).
    """
    import yaml

    from tessera.flows.cli import run

    rng = np.random.default_rng(0)
    label = np.zeros((128, 128), np.uint8)
    label[:, 48:96] = 1
    label[80:, :] = 2
    means = np.array([[1000, 3000, 6000], [2000, 2500, 500], [800, 4000, 3000], [500, 600, 9000]])
    image = means[:, label] + rng.integers(0, 300, (4, 128, 128))
    img = write_geotiff(root / "scene.tif", image.astype(np.uint16), nodata=0)
    lbl = write_geotiff(root / "mask.tif", label)
    params: dict[str, Any] = {
        "train": {
            "store": str(root / "tiles"),
            "out": str(root / "models"),
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}" if tracking else "",
            "trainer": {"max_epochs": 2, "log_every_n_steps": 1},
            "loader": {"batch_size": 8},
        },
        "experiments": experiments,
    }
    if catalogued:
        source = {"name": "scene", "kind": "geotiff", "paths": [img.name]}
        params["ingest"] = {"sources": [source | {"label": {"kind": "raster", "path": lbl.name}}]}
        params["tile"] = {"out": "tiles", "size": 16, "stride": 16, "split": {"block_size": 32}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    if catalogued:
        from contextlib import chdir

        with chdir(root):  # the catalogue's paths are relative to the project
            for stage in ("ingest", "tile"):
                assert run([stage]) == 0
        return root
    args = ["tile", "--input", img, "--label", lbl, "--out", root / "tiles", "--size", "16"]
    assert run([str(a) for a in [*args, "--set", "tile.split.block_size=32"]]) == 0
    return root


def relocated(project: Path, to: Path) -> Path:
    """A copy at ``to`` of a project made by :func:`training_dir`, its own paths moved with it:
    its params, run configs and MLflow store name the copy (its checkpoints' hyper-parameters
    still name the original's tiles, which it only reads)."""
    import shutil
    import sqlite3
    from contextlib import closing

    shutil.copytree(project, to, symlinks=True)
    old, new = f"{project}/", f"{to}/"
    for path in [to / "params.yaml", *to.glob("models/*/run_config.json")]:
        path.write_text(path.read_text().replace(old, new))
    with closing(sqlite3.connect(to / "mlflow.db")) as db, db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in db.execute(f"PRAGMA table_info({table})").fetchall():
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                    name = column[1]
                    db.execute(f'UPDATE {table} SET "{name}" = replace("{name}", ?, ?)', (old, new))
    return to


# one tiny experiment per model type, for the train/evaluate/register tests
TINY_EXPERIMENTS: dict[str, Any] = yaml.safe_load((CONF / "tiny_experiments.yaml").read_text())


def sh(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd``, capturing its output; never raises on a failure."""
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def sh_all(cmds: list[list[str]], cwd: Path, env: dict[str, str]) -> None:
    """Run each command in ``cwd``; each must succeed."""
    for cmd in cmds:
        res = sh(cmd, cwd, env)
        assert res.returncode == 0, f"{' '.join(cmd)}: {res.stdout}{res.stderr}"


def git_dvc_repo(path: Path, env: dict[str, str]) -> Path:
    """A fresh git + DVC repository at ``path`` (analytics off)."""
    path.mkdir(exist_ok=True)
    sh_all(
        [
            ["git", "init", "-q"],
            ["git", "config", "user.email", "t@example.org"],
            ["git", "config", "user.name", "t"],
            ["dvc", "init", "-q"],
            ["dvc", "config", "core.analytics", "false"],
        ],
        path,
        env,
    )
    return path


def stop_process_group(proc: Any) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM its group, then SIGKILL."""
    import os
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON answer."""
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    """POST ``body`` as JSON to ``url`` and decode the answer."""
    import json
    import urllib.request

    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_for(check: Any, seconds: float, what: str) -> Any:
    """Call ``check`` every second until it answers something true (an OSError is no
    answer); fail the test after ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(1)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


@contextmanager
def prefect_server(home: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A real ``prefect server`` on 127.0.0.1 with its own database under ``home``, healthy
    within 90 s and stopped on leaving; yields ``env`` pointed at it (PREFECT_API_URL)."""
    import subprocess
    import sys

    from tessera.flows.local_server.api import SEEDED_START, seed_database
    from tessera.tasks.cluster.processes import free_port

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": api}
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'p.db'}"
    home.mkdir(parents=True, exist_ok=True)
    if seed_database(home / "p.db"):  # as Tessera's local server: a copy, not a migration
        env = {**SEEDED_START, **env}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--analytics-off", "--no-ui"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: get_json(f"{api}/health"), 90, "the Prefect server")
        yield env
    finally:
        stop_process_group(server)


def run_by_worker(
    env: dict[str, str], cwd: Path, deployment: str, parameters: dict[str, Any], pool: str
) -> dict[str, Any]:
    """Create a flow run of ``deployment`` (flow/name), let one real process worker execute
    it (``prefect worker start --run-once``, bounded in time); returns the run's final state."""
    import sys

    api = env["PREFECT_API_URL"]
    dep = wait_for(lambda: get_json(f"{api}/deployments/name/{deployment}"), 60, deployment)
    # a busy server answers 503 (seen once in CI on 2 cores): ask again, within the bound
    run = wait_for(
        lambda: post_json(
            f"{api}/deployments/{dep['id']}/create_flow_run", {"parameters": parameters}
        ),
        60,
        "a flow run",
    )
    prefect = str(Path(sys.executable).parent / "prefect")
    res = sh([prefect, "worker", "start", "--pool", pool, "--run-once"], cwd, env, 300)
    state = get_json(f"{api}/flow_runs/{run['id']}")["state"]
    if state["type"] != "COMPLETED":  # say why: every run's state, subflows included
        runs = post_json(f"{api}/flow_runs/filter", {})
        why = [f"{r['name']}: {r['state']['type']} {r['state'].get('message')}" for r in runs]
        raise AssertionError("\n".join([*why, res.stdout[-3000:], res.stderr[-3000:]]))
    return state


def run_summary(root: Path, name: str) -> dict[str, Any]:
    """``models/<name>/train_summary.json`` of a project made by :func:`training_dir`."""
    import json

    return dict(json.loads((root / "models" / name / "train_summary.json").read_text()))


def last_weights(root: Path, name: str) -> dict[str, Any]:
    """The state dict of ``models/<name>/checkpoints/last.ckpt``."""
    import torch

    ckpt = root / "models" / name / "checkpoints" / "last.ckpt"
    return dict(torch.load(ckpt, weights_only=True)["state_dict"])
