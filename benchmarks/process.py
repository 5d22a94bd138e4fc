"""Process-level figures: peak RSS of a fresh tiling process, CLI start-up cost, timed
``tessera`` commands, and the task runs a command left in Prefect's records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from benchmarks.scenes import make_scene

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "tessera"


def tessera_seconds(
    args: list[Any], cwd: Path, env: dict[str, str], timeout_s: float = 1800.0
) -> float:
    """Wall seconds of ``tessera ARGS``, which must succeed within ``timeout_s``; otherwise
    the benchmark stops with one line."""
    argv = [str(EXE), *map(str, args)]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"tessera {args[0]}: no answer within {timeout_s:.0f} s") from None
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"tessera {' '.join(argv[1:])} failed: {res.stderr.strip()[-2000:]}")
    return took


def task_spans(api_url: str, task: str, since: str) -> list[tuple[float, float]]:
    """(start, end) in seconds of every finished ``task`` run begun after ``since`` (ISO
    time), from the Prefect API at ``api_url`` (30 s at most)."""
    import json
    import urllib.request

    body = json.dumps(
        {"task_runs": {"name": {"like_": task}, "start_time": {"after_": since}}, "limit": 200}
    ).encode()
    req = urllib.request.Request(
        f"{api_url}/task_runs/filter", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        runs = json.loads(r.read())
    return [
        (
            datetime.fromisoformat(t["start_time"]).timestamp(),
            datetime.fromisoformat(t["end_time"]).timestamp(),
        )
        for t in runs
        if t["start_time"] and t["end_time"]
    ]


def peak_rss_child(side: int, workdir: Path) -> float:
    """Peak RSS (MiB) of a fresh process that tiles a ``side``² 4-band scene."""
    scene = make_scene(workdir / f"rss_{side}.tif", side, None)
    code = (
        "import resource, sys, pathlib; sys.path.insert(0, {!r})\n"
        "from benchmarks.bench_tiling import bench_tessera\n"
        "bench_tessera(pathlib.Path({!r}), pathlib.Path({!r}))\n"
        "print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024)\n"
    ).format(str(ROOT), str(scene), str(workdir / f"rss_parts_{side}"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    scene.unlink()
    shutil.rmtree(workdir / f"rss_parts_{side}", ignore_errors=True)
    return float(res.stdout.strip().splitlines()[-1])


def cli_startup(workdir: Path) -> tuple[float, float]:
    """Seconds for `tessera --help` and for a one-tile `tessera tile` (the fixed costs)."""
    tiny = workdir / "tiny.tif"
    with rasterio.open(
        tiny,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="uint8",
        crs="EPSG:32616",
        transform=Affine(10, 0, 0, 0, -10, 0),
    ) as ds:
        ds.write(np.ones((1, 8, 8), np.uint8))
    env = dict(os.environ, PREFECT_HOME=str(workdir / ".prefect"))
    tile = ["tile", "--input", tiny, "--out", workdir / "tiny_out", "--size", "8"]
    return tessera_seconds(["--help"], workdir, env), tessera_seconds(tile, workdir, env)
