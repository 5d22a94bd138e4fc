"""``tessera tile`` from the CLI against the naive loop, start-up subtracted, and the share of
the wall time its orchestration takes (the run's wall time outside the tiling tasks, read from
the local Prefect server's task-run records)."""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from benchmarks.process import task_spans, tessera_seconds
from benchmarks.scenes import settle


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
    args = ["tile", "--input", scene, "--out", out, "--size", size]
    settle()
    return tessera_seconds(args, Path(env["TESSERA_BENCH_DIR"]), env)


def local_api_url(env: dict[str, str]) -> str:
    """The URL of the local Prefect server the runs in ``env`` use."""
    from tessera.flows.local_server.api import running_url

    home = Path(env["XDG_STATE_HOME"]) / "tessera" / "prefect"
    url = running_url(home)
    if url is None:
        raise SystemExit(f"{home}: no local Prefect server is running")
    return url


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


def tiling_busy(env: dict[str, str], since: str) -> float:
    """Seconds during which any tiling task begun after ``since`` (ISO time) was running,
    from the task-run records of the local Prefect server that ran it."""
    return _union(task_spans(local_api_url(env), "tile-scene", since))


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
        since = datetime.now(UTC).isoformat()
        walls.append(tile_cli(scene, out, size, env))
        busy.append(tiling_busy(env, since))
    shutil.rmtree(out)
    med = statistics.median
    net = [w - s for w, s in zip(walls, starts, strict=True)]
    orch = [n - b for n, b in zip(net, busy, strict=True)]
    return CliTiling(tiles, first, med(walls), med(starts), med(busy), med(orch), med(net))


def stop_server(env: dict[str, str]) -> None:
    """Stop the local server the CLI runs started."""
    tessera_seconds(["server", "stop"], Path(env["TESSERA_BENCH_DIR"]), env, timeout_s=60)
