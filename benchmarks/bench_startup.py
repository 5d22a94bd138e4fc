"""Start-up of the CLI: `tessera --help`, and a one-tile `tessera tile --input` with the local
Prefect server warm, against Prefect's temporary API per command (the old default), measured in
the same run.

Run by hand (not a test):  .venv/bin/python benchmarks/bench_startup.py [--runs 5]

Targets (issue 10): `tessera --help` under 1 s; a warm one-tile `tessera tile --input` under 3 s.
Prints one JSON line: medians in seconds, the ratio ephemeral / warm, the peak RSS of a warm
tile process, and whether each target is met. The local server it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cli_tiling import one_tile_scene  # noqa: E402
from benchmarks.process import EXE, tessera_seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-startup-") as tmp:
        work = Path(tmp)
        scene = one_tile_scene(work / "one_tile.tif")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["XDG_STATE_HOME"] = str(work / "state")  # its own Prefect home, outside any project
        local = dict(env, TESSERA_PREFECT_API="local")
        ephemeral = dict(env, TESSERA_PREFECT_API="ephemeral")
        k = iter(range(10_000))

        def tile(e: dict[str, str]) -> float:
            return tessera_seconds(
                ["tile", "--input", str(scene), "--out", f"s{next(k)}", "--size", "64"], work, e
            )

        try:
            help_s = [tessera_seconds(["--help"], work, env) for _ in range(args.runs)]
            cold = tile(local)  # starts the server
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            warm = [tile(local) for _ in range(args.runs)]
            peak_mib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
            eph = [tile(ephemeral) for _ in range(max(2, args.runs // 2))]
        finally:
            subprocess.run(
                [str(EXE), "server", "stop"], cwd=work, env=env, capture_output=True, timeout=60
            )
    med = statistics.median
    result = {
        "help_s": round(med(help_s), 3),
        "help_target_s": 1.0,
        "tile_warm_s": round(med(warm), 3),
        "tile_warm_min_max_s": [round(min(warm), 3), round(max(warm), 3)],
        "tile_target_s": 3.0,
        "tile_cold_first_command_s": round(cold, 3),
        "tile_ephemeral_s": round(med(eph), 3),
        "ratio_ephemeral_over_warm": round(med(eph) / med(warm), 2),
        "peak_rss_mib_children": round(peak_mib, 1),
        "runs": args.runs,
    }
    result["targets_met"] = result["help_s"] < 1.0 and result["tile_warm_s"] < 3.0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
