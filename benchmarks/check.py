"""``make bench-check``: quick versions of the benchmarks as regression gates.

Run:  .venv/bin/python benchmarks/check.py [--only tiling predict startup scaleout] [--workdir D]

Each ratio is measured ``--repeat`` times (3; tiling and loading at least 5) in one run and
gated on the median; each check prints one JSON line (its figures, the gate, ``pass``). The
gates sit a safe distance below the figures measured on the 2-core reference machine (see
GATES), because timings there are noisy.
Exits 1 when any gate fails. The full-size benchmarks (bench_tiling.py, bench_predict.py,
bench_startup.py, bench_scaleout.py) give the figures in the README.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cli_tiling import cli_env, local_api_url, one_tile_scene, stop_server  # noqa: E402
from benchmarks.machine import wait_quiet  # noqa: E402
from benchmarks.process import tessera_seconds  # noqa: E402
from benchmarks.scenes import make_scene, settle, warm  # noqa: E402

# gate: (figure, minimum or maximum, bound); a safe distance under what this machine measures
GATES: dict[str, tuple[str, str, float]] = {
    "tiling": ("tessera_over_naive", "min", 1.5),
    "loading": ("loader_over_memcpy", "min", 0.4),
    "predict": ("ours_over_forward", "min", 0.75),
    "predict_rss": ("rss_big_over_small", "max", 1.2),
    "startup_help": ("help_s", "max", 1.0),
    "startup_tile": ("tile_above_floor_s", "max", 1.5),
    "scaleout": ("two_over_one", "min", 1.4),
}


QUIET_WAIT_S = 30.0  # before each check, for the CPUs to settle under 15 % busy

# random batches of 32 per loading measurement: 40 took under 0.1 s, and one run of three read
# 0.35 of the copies against 0.67 for another
LOADING_BATCHES = 400
# loading pairs at least: over 400 batches, runs of three still read 0.37-0.42 in one run and
# 0.51-0.73 in others (gate 0.4). That was over copies into one cached batch array (see
# bench_memcpy): medians of five read 0.39-0.77 across runs of one day, 0.39 failing CI at
# 2166542; over copies into a new array per batch, 0.66-0.79 in the same processes
LOADING_PAIRS = 5

# tiling pairs at least (a pair takes ~2.7 s): single ratios here ranged 1.27-2.25 (gate 1.5)
# once; seven timed pairs in CI since read 2.07-3.07 and 2.23-3.10 (medians 2.37, 2.84). Five
# failed CI once on this host at 64e41f9, rising after three untimed pairs: 1.03, 1.28, 1.45,
# 2.10, 1.92 (median 1.445); seven, after five untimed, leave the rise out of the median
TILING_PAIRS = 7
# untimed pairs first. One was enough on the VM's first host (the first pair's ratio was the
# lowest of its run in 6 of 8 runs, 1.14-1.57: the tiler's set-up in a new process). On its
# second host, where first-touch memory is slow, a fresh machine's five timed pairs still rose
# in order, 0.898, 1.238, 1.341, 2.049, 2.217 (median 1.341, failed), after one; and once (above)
# after three.
TILING_WARMUP_PAIRS = 5


def median_of(repeat: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """``fn`` measured ``repeat`` times: the median and every value."""
    values = [fn() for _ in range(repeat)]
    return statistics.median(values), values


def report(check: str, figures: dict[str, Any]) -> bool:
    """Print the check's JSON line with its gate; True when it passes."""
    key, kind, bound = GATES[check]
    value = figures[key]
    ok = value >= bound if kind == "min" else value <= bound
    line = {"check": check, **figures, "gate": f"{key} {'>=' if kind == 'min' else '<='} {bound}"}
    line["pass"] = bool(ok)
    print(json.dumps(line), flush=True)
    return bool(ok)


def check_tiling(work: Path, repeat: int) -> list[bool]:
    """Tessera's tiler against the naive loop on an 8192² scene (1,024 tiles), at least
    ``TILING_PAIRS`` times, and random batches from the store against numpy copies of the same
    bytes in RAM."""
    from benchmarks.bench_tiling import bench_naive, bench_tessera, inspect_scene
    from benchmarks.loading import bench_memcpy, publish, steady_loading, tiles_in_ram

    scene = make_scene(work / "scene.tif", 8192, None)
    warm(scene)
    rec = inspect_scene(scene)  # once: what the tiler is given (the ingest stage's work)
    for _ in range(TILING_WARMUP_PAIRS):  # untimed (see TILING_WARMUP_PAIRS)
        bench_naive(scene, work / "naive")
        bench_tessera(scene, work / "parts", rec)
    naive, tess = [], []
    for _ in range(max(repeat, TILING_PAIRS)):  # interleaved, so drift hits both alike
        naive.append(bench_naive(scene, work / "naive"))
        rate, _, part, rec, params = bench_tessera(scene, work / "parts", rec)
        tess.append(rate)
    ratios = [t / n for t, n in zip(tess, naive, strict=True)]
    oks = [
        report(
            "tiling",
            {
                "tessera_over_naive": round(statistics.median(ratios), 3),
                "runs": [round(r, 3) for r in ratios],
                "tessera_tiles_per_s": round(statistics.median(tess), 1),
                "naive_tiles_per_s": round(statistics.median(naive), 1),
            },
        )
    ]
    store = work / "store"
    publish(part, store, rec, params)
    load_pass, in_ram = steady_loading(store, LOADING_BATCHES), tiles_in_ram(part)
    loads, copies, cached = [], [], []
    for _ in range(max(repeat, LOADING_PAIRS)):  # interleaved
        loads.append(load_pass())
        copies.append(bench_memcpy(in_ram, batches=LOADING_BATCHES))
        cached.append(bench_memcpy(in_ram, batches=LOADING_BATCHES, fresh=False))
    ratios = [a / b for a, b in zip(loads, copies, strict=True)]
    over_cached = [a / b for a, b in zip(loads, cached, strict=True)]
    oks.append(
        report(
            "loading",
            {
                "loader_over_memcpy": round(statistics.median(ratios), 3),
                "runs": [round(r, 3) for r in ratios],
                "loader_tiles_per_s": round(statistics.median(loads), 1),
                "memcpy_tiles_per_s": round(statistics.median(copies), 1),
                # not gated: over copies into one batch array that stays in cache
                "loader_over_cached_memcpy": round(statistics.median(over_cached), 3),
            },
        )
    )
    scene.unlink()
    shutil.rmtree(work / "naive", ignore_errors=True)
    return oks


# scene sides of the predict check: the ratio at the larger, three times (at 1024² it read 0.78
# and 0.80 in one run, at 1536² 0.76-1.0, where fixed costs such as the COG copy weigh more);
# peak RSS at the larger against the smaller (4x the pixels)
PREDICT_SIDES = (1024, 2048)
# the share of its batches the bare forward times, scaled to all (the same batch each time)
FORWARD_FRACTION = 0.34


def check_predict(work: Path, repeat: int) -> list[bool]:
    """``predict_scene`` against the bare forward over the same windows of a 2048² scene (timed
    on a third of its batches), ``repeat`` pairs, in one fresh process after one pair at 1024²
    (its forward whole); that process's peak RSS after the 2048² pairs against after the 1024²
    one."""
    from benchmarks.bench_predict import run_child

    bands = 11
    small_side, big_side = PREDICT_SIDES
    scenes = {s: make_scene(work / f"predict_{s}.tif", s, None, bands) for s in PREDICT_SIDES}
    sizes = run_child("sizes", within_s=600, scene=scenes[small_side], big_scene=scenes[big_side],
                      out=work / "maps", batch_size=16, overlap=0.25,
                      forward_fraction=FORWARD_FRACTION, repeat=repeat)  # fmt: skip
    small, big = sizes["small"], sizes["big"]
    ratios = [run["forward_seconds"] / run["seconds"] for run in big["runs"]]
    oks = [
        report(
            "predict",
            {
                "ours_over_forward": round(statistics.median(ratios), 3),
                "runs": [round(r, 3) for r in ratios],
                f"at_{small_side}": round(small["forward_seconds"] / small["seconds"], 3),
            },
        ),
        report(
            "predict_rss",
            {
                "rss_big_over_small": round(big["peak_rss_mib"] / small["peak_rss_mib"], 3),
                f"rss_{big_side}_mib": round(big["peak_rss_mib"], 1),
                f"rss_{small_side}_mib": round(small["peak_rss_mib"], 1),
            },
        ),
    ]
    for s in scenes.values():
        s.unlink()
    return oks


# What a one-tile `tessera tile` cannot avoid importing: the gate is on the seconds above it,
# measured in the same run. The absolute 3 s was set on a host where this floor took
# about 1.2 s; after the VM moved host it took 2.5-2.85 s and a warm one-tile run 3.2-3.8 s,
# with the previous commit's code as with this one (3.43 and 3.51 s against 3.83 and 3.52 s,
# A/B in one clone), so an absolute gate measured the host. The absolute figure is still
# reported (``target_3s_met``).
IMPORT_FLOOR = "import prefect.flows, prefect.client.orchestration, pandas, rasterio, typer"


def import_floor_seconds() -> float:
    """Wall seconds of a Python that imports :data:`IMPORT_FLOOR` and exits (300 s at most;
    otherwise the check stops with one line, as :func:`tessera_seconds` does)."""
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, "-c", IMPORT_FLOOR], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        raise SystemExit("import floor: no answer within 300 s") from None
    if res.returncode != 0:
        raise SystemExit(f"import floor failed: {res.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


def check_startup(work: Path, repeat: int) -> list[bool]:
    """``tessera --help`` and a warm one-tile ``tessera tile --input``, the latter gated on its
    seconds above the import floor of the libraries it needs (:data:`IMPORT_FLOOR`)."""
    env = cli_env(work.parent)  # the local server the later checks' runs share
    scene = one_tile_scene(work / "one_tile.tif")
    counter = iter(range(1000))

    def tile() -> float:
        return tessera_seconds(
            ["tile", "--input", scene, "--out", f"s{next(counter)}", "--size", "64"], work, env
        )

    help_s, helps = median_of(repeat, lambda: tessera_seconds(["--help"], work, env))
    tile()  # starts the local server, or warms the one running
    tile_s, tiles = median_of(repeat, tile)
    floor_s, floors = median_of(repeat, import_floor_seconds)
    figures = {
        "tile_above_floor_s": round(tile_s - floor_s, 3),
        "tile_warm_s": round(tile_s, 3),
        "runs": [round(v, 3) for v in tiles],
        "import_floor_s": round(floor_s, 3),
        "floor_runs": [round(v, 3) for v in floors],
        "target_3s_met": tile_s <= 3.0,
    }
    return [
        report("startup_help", {"help_s": round(help_s, 3), "runs": [round(v, 3) for v in helps]}),
        report("startup_tile", figures),
    ]


# width, height: 64 rows of 256-px tiles, cut in four bands of 16 rows, two per worker (at
# 16384x8192, two bands, one per worker, dask put both on one worker in 2 of 3 runs once: 1.26)
SCALEOUT_SIZE = (16384, 16384)
# image bands of that scene: the row bands depend on its pixels per plane alone, and two image
# bands halve each run's bytes (four took 8-11 s a run on one worker)
SCALEOUT_BANDS = 2


WARM_TIMEOUT_S = 120.0  # for every worker to import the tiling task's modules


def warm_workers(address: str) -> None:
    """Import the tiling task's modules on every worker of ``address`` (``WARM_TIMEOUT_S`` at
    most, else one line), so that the first timed run does not pay for them."""
    from distributed import Client, wait

    code = "import prefect.task_engine, tessera.tasks.steps.tile, tessera.flows.tile"
    with Client(address, timeout=60) as client:
        futures = [client.submit(exec, code, workers=[w], pure=False)
                   for w in client.scheduler_info()["workers"]]  # fmt: skip
        try:
            wait(futures, timeout=WARM_TIMEOUT_S)
        except TimeoutError:
            raise SystemExit(f"{address}: workers not warm within {WARM_TIMEOUT_S:.0f} s") from None
        client.gather(futures)  # an import that failed stops here, with its error


def check_scaleout(work: Path, repeat: int) -> list[bool]:
    """The mapped phase of ``tessera tile`` of a 16384² scene on one and on two Dask
    workers (one thread each, worker i pinned to CPU i: one worker has one core, two have two)
    of a scheduler of its own, with the local Prefect server; ``repeat`` runs on each, the
    workers' imports warmed first, gated on the ratio of the medians. The scene is over
    tasks.tiling.cut.BAND_PIXELS, so it is cut in four bands of rows, two per worker (an 8192²
    scene is one task, which a second worker cannot speed up). Unpinned, one worker's tiler
    already used both cores through its reader and writer threads: 1.34-2.59 over runs."""
    from benchmarks.bench_scaleout import dask_workers, mapped_span

    width, height = SCALEOUT_SIZE
    scene = make_scene(work / "scaleout.tif", width, None, SCALEOUT_BANDS, height)
    warm(scene)
    env = cli_env(work.parent)
    one = one_tile_scene(work / "one_tile.tif")
    spans: dict[int, list[float]] = {}
    try:
        try:
            url = local_api_url(env)  # started by the startup check
        except SystemExit:
            tessera_seconds(["tile", "--input", one, "--out", "warm", "--size", "64"], work, env)
            url = local_api_url(env)
        env = {**env, "PREFECT_API_URL": url}
        for n in (1, 2):
            with dask_workers(work / f"dask-{n}", n, env, pinned=True) as (address, _):
                warm_workers(address)
                for i in range(repeat):
                    out = work / f"dask-{n}" / f"tiles_{i}"
                    settle()  # the last run's output written back: no throttled writer
                    since = datetime.now(UTC).isoformat()
                    tessera_seconds(
                        ["tile", "--input", str(scene), "--size", "256", "--out", str(out),
                         "--set", f"runner.address={address}"],
                        work, env,
                    )  # fmt: skip
                    spans.setdefault(n, []).append(mapped_span(env, "tile-scene", since))
                    shutil.rmtree(out)
    finally:
        scene.unlink()
    one_s, two_s = statistics.median(spans[1]), statistics.median(spans[2])
    return [
        report(
            "scaleout",
            {
                "two_over_one": round(one_s / two_s, 3),
                "mapped_s": {str(n): [round(v, 2) for v in s] for n, s in spans.items()},
            },
        )
    ]


CHECKS: dict[str, Callable[[Path, int], list[bool]]] = {
    "tiling": check_tiling,
    "predict": check_predict,
    "startup": check_startup,
    "scaleout": check_scaleout,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(CHECKS), default=list(CHECKS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tessera-bench-check-"))
    t0 = time.perf_counter()
    oks: list[bool] = []
    took: dict[str, float] = {}
    try:
        for name in args.only:
            folder = work / name
            folder.mkdir(parents=True, exist_ok=True)
            # not a gate: how busy the machine is apart from this run, after a bounded wait
            print(json.dumps({"machine": name, **wait_quiet(QUIET_WAIT_S)}), flush=True)
            started = time.perf_counter()
            oks += CHECKS[name](folder, args.repeat)
            took[name] = round(time.perf_counter() - started)
    finally:
        with contextlib.suppress(SystemExit):  # the local server the CLI runs started, if any
            stop_server(cli_env(work))
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    failed = oks.count(False)
    print(
        f"bench-check: {len(oks) - failed} of {len(oks)} gates passed in "
        f"{time.perf_counter() - t0:.0f} s ({', '.join(f'{k} {v} s' for k, v in took.items())}; "
        f"peak RSS of this process {peak:.0f} MiB; {os.cpu_count()} CPUs)"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
