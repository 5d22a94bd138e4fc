"""Scale-out on Dask: ``tessera tile`` and ``tessera predict`` of one big scene on one and then
two Dask workers (one thread each), on the same local cluster in one run.

Run by hand, as root (not a test):
    .venv/bin/python benchmarks/bench_scaleout.py [--side 16384] [--workdir DIR]

Starts the local cluster (``tessera cluster up``'s code; its start time is printed), writes a
``side``² 4-band uint16 scene, trains a tiny seg_ae on a small scene (here, not timed), then
for 1 and 2 workers starts that many ``dask worker`` processes (``--nthreads 1``,
``OMP_NUM_THREADS=1``) on a scheduler of its own and times both commands from the command
line. A big scene is cut in bands of rows (tiling and per-pixel prediction), so both workers
share it. Prints one JSON line: megapixels per second per worker count and stage, end to end
from the command line, the ratio 2-worker/1-worker (goal >= 1.6 on a 2-core machine), the same
ratio for the mapped phase alone (first task start to last task end, from Prefect's API), each
worker's peak RSS, and the cluster's start-up seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.process import task_spans, tessera_seconds  # noqa: E402
from benchmarks.scenes import make_scene, warm  # noqa: E402

GOAL = 1.6


def mapped_span(env: dict[str, str], task: str, since: str) -> float:
    """Seconds from the first start to the last end of the ``task`` runs begun after
    ``since`` (ISO time): the mapped phase alone, without start-up, inspection or publishing."""
    spans = task_spans(env["PREFECT_API_URL"], task, since)
    return max(e for _, e in spans) - min(s for s, _ in spans) if spans else float("nan")


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def _model(workdir: Path, env: dict[str, str]) -> Path:
    """A tiny seg_ae (64-px windows, 4 bands) trained here on a small scene (not timed): its
    best checkpoint."""
    import yaml

    from tests.cluster.projects import scene_project
    from tests.helpers import TINY_EXPERIMENTS

    exp = {**TINY_EXPERIMENTS["tiny-seg"], "trainer": {"max_epochs": 1}}
    root = scene_project(workdir / "model", {"seg": exp}, size=256)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tile"].update(size=64, stride=64, split={"block_size": 128})
    params["train"]["tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in (["ingest"], ["tile"], ["train", "--experiment", "seg"]):
        tessera_seconds(stage, root, env)
    return root / "models" / "seg" / "checkpoints" / "best.ckpt"


def pin(pid: int, cpu: int) -> None:
    """Run every thread of process ``pid`` (and the threads they start) on CPU ``cpu`` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


@contextmanager
def dask_workers(
    folder: Path, n: int, env: dict[str, str], pinned: bool = False
) -> Iterator[tuple[str, list[Any]]]:
    """A scheduler of this run's own with ``n`` fresh one-thread workers: (address, workers);
    all stopped on leaving. ``pinned``: worker i runs on CPU i only, so that one worker has
    one core and two have two, whatever threads a task starts inside its worker."""
    from tessera.tasks.cluster import dask as dask_daemons
    from tessera.tasks.cluster.processes import free_port, stop

    folder.mkdir()
    port = free_port()
    sched = dask_daemons.start_scheduler(folder, port)
    address = f"tcp://127.0.0.1:{port}"
    one_thread = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    workers = [dask_daemons.start_worker(folder, address, f"w{i}", one_thread) for i in range(n)]
    try:
        dask_daemons.wait_for_workers(address, n, 120, sched)
        if pinned:
            for i, w in enumerate(workers):
                pin(w.pid, i % (os.cpu_count() or 1))
        yield address, workers
    finally:
        for d in [*workers, sched]:
            stop(d)


def _run(n: int, scene: Path, ckpt: Path, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Both stages on ``n`` fresh workers of a scheduler of this run's own."""
    folder = workdir / f"dask-{n}"
    with dask_workers(folder, n, env) as (address, workers):
        on = ["--set", f"runner.address={address}"]
        since = datetime.now(UTC).isoformat()
        tile_args = ["tile", "--input", scene, "--size", 256, "--out", folder / "tiles", *on]
        tile = tessera_seconds(tile_args, workdir, env)
        tile_mapped = mapped_span(env, "tile-scene", since)
        since = datetime.now(UTC).isoformat()
        predict_args = ["predict", "--model", ckpt, "--input", scene, "--out", folder / "maps", *on]
        pred = tessera_seconds(predict_args, ckpt.parents[3], env)
        pred_mapped = mapped_span(env, "predict-scene", since)
        rss = [round(_peak_rss_mib(w.pid), 1) for w in workers]
    return {
        "tile_s": round(tile, 2),
        "predict_s": round(pred, 2),
        "tile_mapped_s": round(tile_mapped, 2),
        "predict_mapped_s": round(pred_mapped, 2),
        "worker_peak_rss_mib": rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=16384)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from tessera.tasks.cluster.cluster import down, up

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tessera-scaleout-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the cluster
    t0 = time.perf_counter()
    cluster = up(workdir / "cluster")
    started = time.perf_counter() - t0
    try:
        env = {**os.environ, **cluster.env}  # its Prefect server; no profile: runners by --set
        env.pop("TESSERA_PROFILE", None)
        ckpt = _model(workdir, env)
        scene = make_scene(workdir / "scene.tif", args.side, None)
        warm(scene)
        runs = {n: _run(n, scene, ckpt, workdir, env) for n in (1, 2)}
    finally:
        down(workdir / "cluster")
    mpx = args.side**2 / 1e6
    out: dict[str, Any] = {"side": args.side, "cluster_start_s": round(started, 1), "goal": GOAL}
    for stage in ("tile", "predict"):
        rate = {n: mpx / runs[n][f"{stage}_s"] for n in runs}
        out[f"{stage}_mpx_per_s"] = {str(n): round(r, 2) for n, r in rate.items()}
        out[f"{stage}_ratio_2_over_1"] = round(rate[2] / rate[1], 3)
        # the mapped phase alone: what more workers can speed up
        mapped = {n: runs[n][f"{stage}_mapped_s"] for n in runs}
        out[f"{stage}_mapped_ratio_2_over_1"] = round(mapped[1] / mapped[2], 3)
    out["seconds"] = {
        str(n): {k: v for k, v in r.items() if k.endswith("_s")} for n, r in runs.items()
    }
    out["worker_peak_rss_mib"] = {str(n): r["worker_peak_rss_mib"] for n, r in runs.items()}
    out["met"] = all(out[f"{s}_ratio_2_over_1"] >= GOAL for s in ("tile", "predict"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
