"""``tessera tile`` from the CLI against the naive loop, start-up subtracted, and the share of
the wall time its orchestration takes (the run's wall time outside the tiling tasks, read from
the local Prefect server's task-run records)."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

EXE = Path(sys.executable).parent / "tessera"


@dataclass
class CliTiling:
    """One scene tiled from the CLI ``runs`` times at one tile size (medians over the runs).

    Args:
        tiles: Tiles per run.
        first_s: Wall time of the first run (it inspects and hashes the input).
        wall_s: Median wall time of the later runs (the inspection reused).
        startup_s: Median wall time of a one-tile run, subtracted from ``wall_s``.
        busy_s: Median time any tiling task ran (union of their intervals).
        orchestration_s: Median of wall - start-up - busy: everything else the run did.
        net_s: Median of wall - start-up, paired run by run.
    """

    tiles: int
    first_s: float
    wall_s: float
    startup_s: float
    busy_s: float
    orchestration_s: float
    net_s: float

    @property
    def tiles_per_s(self) -> float:
        """Throughput with the start-up subtracted."""
        return self.tiles / max(self.net_s, 1e-9)

    @property
    def orchestration_share(self) -> float:
        """Orchestration's share of the wall time (start-up excluded)."""
        return self.orchestration_s / max(self.net_s, 1e-9)


def cli_env(work: Path) -> dict[str, str]:
    """A user's environment outside any project: the warm local server in ``work``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["XDG_STATE_HOME"] = str(work / "state")
    env["TESSERA_PREFECT_API"] = "local"
    env["TESSERA_BENCH_DIR"] = str(work)  # the runs' working directory: outside any project
    return env


def one_tile_scene(path: Path) -> Path:
    """A 64² one-band GeoTIFF: one tile, so that its run is start-up alone."""
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16",
        crs="EPSG:32616", transform=Affine(30, 0, 452475, 0, -30, 3408645),
    ) as ds:  # fmt: skip
        ds.write(np.arange(1, 64 * 64 + 1, dtype=np.uint16).reshape(1, 64, 64))
    return path


def tile_cli(scene: Path, out: Path, size: int, env: dict[str, str]) -> float:
    """Wall seconds of ``tessera tile --input scene --out out --size size``."""
    args = ["tile", "--input", str(scene), "--out", str(out), "--size", str(size)]
    t0 = time.perf_counter()
    res = subprocess.run(
        [str(EXE), *args], env=env, capture_output=True, text=True, cwd=env["TESSERA_BENCH_DIR"]
    )
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"tessera {' '.join(args)} failed: {res.stderr.strip()[-400:]}")
    return took


def startup(work: Path, env: dict[str, str]) -> float:
    """Wall seconds of a one-tile ``tessera tile`` (the first call starts the local server)."""
    scene = work / "one_tile.tif"
    if not scene.exists():
        one_tile_scene(scene)
    out = work / "one_tile"
    shutil.rmtree(out, ignore_errors=True)
    return tile_cli(scene, out, 64, env)


def _union(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def last_tiling_busy(env: dict[str, str]) -> float:
    """Seconds during which any tiling task of the latest ``tessera-tile`` run was running,
    from the task-run records of the local Prefect server that ran it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = Path(env["XDG_STATE_HOME"]) / "tessera" / "prefect"
    from tessera.flows.local_api import running_url

    url = running_url(home)
    if url is None:
        raise SystemExit(f"{home}: no local Prefect server is running")

    async def read() -> float:
        async with get_client() as client:
            (run,) = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["tessera-tile"])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [run.id]})
            )
            spans = [
                (t.start_time.timestamp(), t.end_time.timestamp())
                for t in tasks
                if t.name.startswith("tile-scene") and t.start_time and t.end_time
            ]
            return _union(spans)

    with temporary_settings(updates={PREFECT_API_URL: url}):
        return asyncio.run(read())


def bench_cli_tiling(
    scene: Path, work: Path, size: int, env: dict[str, str], runs: int = 3
) -> CliTiling:
    """Tile ``scene`` from the CLI ``runs`` + 1 times into fresh stores (the first run hashes the
    input; the later ones reuse its inspection, as a user's reruns do), each later run paired
    with a one-tile run just before it, whose time is subtracted."""
    with rasterio.open(scene) as ds:
        tiles = (ds.height // size) * (ds.width // size)
    startup(work, env)  # the server warm
    out = work / f"cli_{size}"
    first = tile_cli(scene, out, size, env)
    walls, starts, busy = [], [], []
    for _ in range(runs):
        shutil.rmtree(out)  # a fresh store each time: nothing to reuse but the inspection
        starts.append(startup(work, env))
        walls.append(tile_cli(scene, out, size, env))
        busy.append(last_tiling_busy(env))
    shutil.rmtree(out)
    med = statistics.median
    net = [w - s for w, s in zip(walls, starts, strict=True)]
    orch = [n - b for n, b in zip(net, busy, strict=True)]
    return CliTiling(tiles, first, med(walls), med(starts), med(busy), med(orch), med(net))


def stop_server(env: dict[str, str]) -> None:
    """Stop the local server the CLI runs started."""
    subprocess.run(
        [str(EXE), "server", "stop"],
        env=env,
        capture_output=True,
        timeout=60,
        cwd=env["TESSERA_BENCH_DIR"],
    )
