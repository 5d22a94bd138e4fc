"""Tiling and loading throughput of the tile store, against references measured in the same run.

Run by hand (not a test):  .venv/bin/python benchmarks/bench_tiling.py [--side 8192] [--workdir DIR]

Prints, for each figure, the measured value, its ratio to the reference and the target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cli_tiling import (  # noqa: E402
    bench_cli_tiling,
    cli_env,
    stop_server,
)
from benchmarks.loading import (  # noqa: E402
    bench_loading,
    bench_memcpy,
    bench_worker_ceiling,
    publish,
)
from benchmarks.process import cli_startup, peak_rss_child  # noqa: E402
from benchmarks.scenes import BANDS, TILE, make_scene, settle, warm  # noqa: E402


def bench_naive(path: Path, out: Path) -> float:
    """One rasterio window read and one np.save per tile."""
    out.mkdir(parents=True, exist_ok=True)
    settle()
    t0 = time.perf_counter()
    n = 0
    with rasterio.open(path) as ds:
        for r in range(0, ds.height, TILE):
            for c in range(0, ds.width, TILE):
                a = ds.read(window=Window(c, r, TILE, TILE))
                np.save(out / f"{r}_{c}.npy", a)
                n += 1
    dt = time.perf_counter() - t0
    shutil.rmtree(out)
    return n / dt


def bench_whole_read(path: Path) -> float:
    """The floor: read the whole scene into memory (tiles/s equivalent)."""
    t0 = time.perf_counter()
    with rasterio.open(path) as ds:
        a = ds.read()
    dt = time.perf_counter() - t0
    return (a.shape[1] // TILE) * (a.shape[2] // TILE) / dt


def inspect_scene(path: Path) -> Any:
    """The catalogue record of a one-file scene, as the ingest flow makes it."""
    from tessera.tasks.sources.catalog import inspect_source
    from tessera.tasks.sources.specs import SourceSpec

    (rec,) = inspect_source(
        SourceSpec(name="bench", kind="geotiff", paths=[str(path)]), Path("/")
    ).records
    return rec


def bench_tessera(path: Path, parts: Path, rec: Any = None) -> tuple[float, float, Path, Any, Any]:
    """Tessera's tiler (the function the tile task wraps) into a fresh part; ``rec``: the
    scene's record from :func:`inspect_scene`, inspected here (untimed) when not given."""
    from tessera.tasks.tiling.cut import PartFolders, tile_scene
    from tessera.tasks.tiling.params import TileParams

    rec = rec or inspect_scene(path)
    params = TileParams(size=TILE, stride=TILE, min_valid_fraction=0.0)
    shutil.rmtree(parts, ignore_errors=True)
    settle()
    t0 = time.perf_counter()
    summary = tile_scene(rec, params, {"mode": "blocks"}, PartFolders(parts), Path("/"), False)
    dt = time.perf_counter() - t0
    n = summary["tiles"]
    mbs = n * BANDS * TILE * TILE * 2 / dt / 2**20
    return n / dt, mbs, parts / summary["name"], rec, params


def bench_torchgeo(path: Path) -> float | None:
    """torchgeo's GridGeoSampler over a RasterDataset, when torchgeo imports."""
    try:
        from torch.utils.data import DataLoader
        from torchgeo.datasets import RasterDataset, stack_samples
        from torchgeo.samplers import GridGeoSampler
    except Exception as exc:  # torchgeo needs torchvision, which does not import here
        print(
            f"  torchgeo: skipped ({type(exc).__name__}: {str(exc)[:80]}); "
            "install the 'bench' extra where torchvision works"
        )
        return None

    class Scene(RasterDataset):  # type: ignore[misc]
        filename_glob = path.name

    ds = Scene(paths=str(path.parent))
    sampler = GridGeoSampler(ds, size=TILE, stride=TILE, units=1)  # pixel units
    t0 = time.perf_counter()
    n = sum(
        len(b["image"])
        for b in DataLoader(ds, sampler=sampler, batch_size=32, collate_fn=stack_samples)
    )
    return n / (time.perf_counter() - t0)


def row(
    name: str, value: float, unit: str, ratio: float | None, target: str, ok: bool | None
) -> None:
    r = f"{ratio:6.2f}x" if ratio is not None else "      -"
    status = "" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {name:<44} {value:>10.1f} {unit:<8} {r}  target {target:<22} {status}")


def cli_section(side: int, sizes: list[int], repeat: int, work: Path) -> dict[str, float]:
    """``tessera tile`` from the CLI on a ``side``² scene at each tile size, start-up
    subtracted, against the naive loop; the orchestration's share at each tile count."""
    scene = make_scene(work / "cli_scene.tif", side, None)
    warm(scene)
    env = cli_env(work)
    results: dict[str, float] = {}
    try:
        naive = float(np.median([bench_naive(scene, work / "naive") for _ in range(repeat)]))
        shutil.rmtree(work / "naive", ignore_errors=True)
        print(f"\n[cli] tessera tile --input on {side}^2 x{BANDS} uint16, start-up subtracted")
        row(
            f"naive loop, {TILE}px (window read + np.save)",
            naive,
            "tiles/s",
            None,
            "reference",
            None,
        )
        orch = {}
        for size in sizes:
            run = bench_cli_tiling(scene, work, size, env, repeat)
            tag = f"cli_{run.tiles}"
            orch[run.tiles] = run.orchestration_s
            results.update(
                {
                    f"{tag}_tiles_per_s": run.tiles_per_s,
                    f"{tag}_first_s": run.first_s,
                    f"{tag}_wall_s": run.wall_s,
                    f"{tag}_busy_s": run.busy_s,
                    f"{tag}_startup_s": run.startup_s,
                    f"{tag}_orchestration_s": run.orchestration_s,
                    f"{tag}_orchestration_share": run.orchestration_share,
                }
            )
            row(
                f"{run.tiles} tiles of {size}px: first run (hashes)",
                run.first_s,
                "s",
                None,
                "(info)",
                None,
            )
            row(f"{run.tiles} tiles of {size}px: rerun wall", run.wall_s, "s", None, "(info)", None)
            row("paired one-tile run (start-up)", run.startup_s, "s", None, "subtracted", None)
            row(
                f"{run.tiles} tiles: orchestration (wall - start-up - tiling)",
                run.orchestration_s,
                "s",
                run.orchestration_share,
                "(share of wall)",
                None,
            )
            if size == TILE:
                results["cli_vs_naive"] = run.tiles_per_s / naive
                row(
                    "tessera tile (CLI) vs naive",
                    run.tiles_per_s,
                    "tiles/s",
                    run.tiles_per_s / naive,
                    ">= 2.0x naive",
                    run.tiles_per_s / naive >= 2.0,
                )
        if len(orch) == 2:
            (n1, o1), (n2, o2) = sorted(orch.items())
            growth = o2 / max(o1, 1e-3)
            results["orchestration_growth"] = growth
            row(
                f"orchestration at {n2} over {n1} tiles",
                growth,
                "x",
                None,
                f"< {n2 // n1}x (tile count)",
                growth < n2 / n1,
            )
    finally:
        stop_server(env)
        scene.unlink()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--side", type=int, default=8192)
    ap.add_argument("--rss-side", type=int, default=16384)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="Interleaved runs; medians reported.")
    ap.add_argument("--cli-side", type=int, default=16384, help="0: no CLI section.")
    ap.add_argument("--cli-sizes", type=int, nargs="+", default=[TILE, TILE // 4])
    ap.add_argument("--only-cli", action="store_true", help="The CLI section alone.")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, float | None] = {}
    print(
        f"Tessera tiling benchmark: {args.side}x{args.side}x{BANDS} uint16, {TILE}px tiles, "
        f"{os.cpu_count()} CPUs, workdir {work}"
    )
    if args.cli_side:
        results.update(cli_section(args.cli_side, args.cli_sizes, args.repeat, work))
    for compress in () if args.only_cli else (None, "deflate"):
        tag = compress or "uncompressed"
        scene = make_scene(work / f"scene_{tag}.tif", args.side, compress)
        warm(scene)
        runs: dict[str, list[float]] = {"naive": [], "whole": [], "tessera": [], "mbs": []}
        for _ in range(args.repeat):  # interleaved, so drift hits every method alike
            runs["naive"].append(bench_naive(scene, work / "naive"))
            runs["whole"].append(bench_whole_read(scene))
            tess, mbs, part, rec, params = bench_tessera(scene, work / f"parts_{tag}")
            runs["tessera"].append(tess)
            runs["mbs"].append(mbs)
        print(
            f"\n[{tag}] runs (tiles/s): "
            + "; ".join(f"{k} {', '.join(f'{v:.0f}' for v in vals)}" for k, vals in runs.items())
        )
        naive, whole, tess, mbs = (
            float(np.median(runs[k])) for k in ("naive", "whole", "tessera", "mbs")
        )
        tg = bench_torchgeo(scene) if compress is None else None
        results.update(
            {
                f"{tag}_naive": naive,
                f"{tag}_whole": whole,
                f"{tag}_tessera": tess,
                f"{tag}_tessera_mbs": mbs,
                f"{tag}_torchgeo": tg,
            }
        )
        print(f"[{tag}] tiling, median of {args.repeat} (tiles/s)")
        row("naive loop (window read + np.save)", naive, "tiles/s", None, "reference", None)
        row("whole-scene rasterio read (floor)", whole, "tiles/s", None, "reference", None)
        if compress is None:
            row(
                "tessera vs naive",
                tess,
                "tiles/s",
                tess / naive,
                ">= 2.0x naive",
                tess / naive >= 2.0,
            )
            row(
                "tessera vs whole-scene read",
                tess,
                "tiles/s",
                tess / whole,
                ">= 0.6x read",
                tess / whole >= 0.6,
            )
        else:
            row(
                "tessera vs naive (DEFLATE, both cores)",
                tess,
                "tiles/s",
                tess / naive,
                ">= 1.5x naive",
                tess / naive >= 1.5,
            )
            row("tessera vs whole-scene read", tess, "tiles/s", tess / whole, "(info)", None)
        row("tessera write rate", mbs, "MiB/s", None, "(info)", None)
        if tg is not None:
            row("tessera vs torchgeo GridGeoSampler", tess, "tiles/s", tess / tg, "(info)", None)
        if compress is None:
            shards = part
            memcpy = float(np.median([bench_memcpy(shards) for _ in range(args.repeat)]))
            results["memcpy"] = memcpy
            print("\n[loading] random batches of 32 from the store")
            row("numpy copy of the same bytes (memcpy)", memcpy, "tiles/s", None, "reference", None)
            store = work / "store"
            publish(part, store, rec, params)
            ceiling = float(np.median([bench_worker_ceiling() for _ in range(args.repeat)]))
            results["worker_ceiling"] = ceiling
            row(
                "torch 2-worker hand-over ceiling (no reads)",
                ceiling,
                "tiles/s",
                ceiling / memcpy,
                "reference",
                None,
            )
            for w in (0, 2):
                cold, v = (
                    float(np.median(x))
                    for x in zip(
                        *[bench_loading(store, w) for _ in range(args.repeat)], strict=True
                    )
                )
                results[f"load_w{w}"], results[f"load_w{w}_cold"] = v, cold
                row(
                    f"DataLoader, {w} workers, first pass (cold)",
                    cold,
                    "tiles/s",
                    cold / memcpy,
                    "(info)",
                    None,
                )
                row(
                    f"DataLoader, {w} workers, steady state",
                    v,
                    "tiles/s",
                    v / memcpy,
                    ">= 0.5x memcpy",
                    v / memcpy >= 0.5,
                )
                row(
                    f"DataLoader, {w} workers vs torchgeo random (~460)",
                    v,
                    "tiles/s",
                    v / 460,
                    ">= 20x (ref. figure)",
                    v / 460 >= 20,
                )
                if w:
                    row(
                        f"DataLoader, {w} workers vs hand-over ceiling",
                        v,
                        "tiles/s",
                        v / ceiling,
                        "(info)",
                        None,
                    )
        scene.unlink()
    if args.only_cli:
        print("\n" + json.dumps(results))
        return
    print("\n[memory] peak RSS of a fresh process tiling the scene")
    small = peak_rss_child(args.side // 2, work)
    big = peak_rss_child(args.rss_side, work)
    results.update({"rss_small": small, "rss_big": big})
    row(f"{args.side // 2}^2 x4 scene", small, "MiB", None, "(flatness reference)", None)
    # Strips are the only buffers that grow, with the scene's width: 3 in flight at most.
    strip_mib = 3 * args.rss_side * TILE * BANDS * 2 / 2**20
    row(
        f"{args.rss_side}^2 x4 scene ({args.rss_side**2 * 8 / 2**30:.1f} GiB)",
        big,
        "MiB",
        big / small,
        "< 600 MiB",
        big < 600,
    )
    row(
        "growth over the small scene (width-bound strips)",
        big - small,
        "MiB",
        None,
        f"<= {strip_mib:.0f} MiB strips",
        big - small <= strip_mib,
    )
    helps, tile_one = cli_startup(work)
    results.update({"cli_help_s": helps, "cli_tile_one_s": tile_one})
    print("\n[CLI] fixed start-up cost")
    row("tessera --help", helps, "s", None, "(info)", None)
    row("tessera tile on one 8x8 tile (Prefect API start)", tile_one, "s", None, "(info)", None)
    print("\n" + json.dumps(results))
    print(
        f"peak RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
