"""Process-level figures: peak RSS of a fresh tiling process, CLI start-up cost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from benchmarks.scenes import make_scene

ROOT = Path(__file__).resolve().parents[1]


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
    exe = Path(sys.executable).parent / "tessera"
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
    out = []
    for args in (
        ["--help"],
        ["tile", "--input", str(tiny), "--out", str(workdir / "tiny_out"), "--size", "8"],
    ):
        t0 = time.perf_counter()
        subprocess.run([str(exe), *args], capture_output=True, env=env, check=True, cwd=workdir)
        out.append(time.perf_counter() - t0)
    return out[0], out[1]
