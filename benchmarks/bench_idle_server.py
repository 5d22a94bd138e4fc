"""Idle cost of one local Prefect server as Tessera starts it: CPU (% of one core) and RSS.

Run by hand (not a test):  .venv/bin/python benchmarks/bench_idle_server.py [--prefect-defaults]

It starts the server with `tessera server start` in a temporary folder (its own Prefect home,
outside any project), waits until it is healthy, lets it idle for ``--settle-s`` seconds, then
reads /proc/<pid>/stat (utime + stime, and cutime + cstime of reaped children) of the watchdog
and of every process below it at the start and at the end of ``--sample-s`` seconds, and their
RSS (VmRSS, summed over the tree) every 5 s. ``--prefect-defaults`` sets every service setting
Tessera changes back to Prefect's default, for the "before" figure. One JSON line; the server is
stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = Path(sys.executable).parent / "tessera"
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def cpu_ticks(pid: int) -> int | None:
    """utime + stime + cutime + cstime of ``pid`` (clock ticks), None when it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def names(pids: list[int]) -> list[tuple[int, str]]:
    """Each live process's PID and command line, shortened."""
    out = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        out.append((pid, " ".join(a.decode(errors="replace") for a in argv if a)[:90]))
    return out


def prefect_defaults() -> dict[str, str]:
    """Prefect's own defaults for every setting Tessera's quiet server changes."""
    import prefect.settings

    from tessera.flows.local_server.api import QUIET_SERVICES

    return {k: str(getattr(prefect.settings, k).value()).lower() for k in QUIET_SERVICES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle-s", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--prefect-defaults", action="store_true")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    if args.prefect_defaults:
        env.update(prefect_defaults())
    with tempfile.TemporaryDirectory(prefix="tessera-bench-idle-") as tmp:
        env["XDG_STATE_HOME"] = str(Path(tmp) / "state")
        home = Path(tmp) / "state" / "tessera" / "prefect"
        try:
            t0 = time.monotonic()
            res = subprocess.run(
                [str(EXE), "server", "start"], cwd=tmp, env=env, capture_output=True, text=True
            )
            if res.returncode != 0:
                raise SystemExit(f"tessera server start failed: {res.stderr.strip()[-300:]}")
            start_s = time.monotonic() - t0
            root = int(json.loads((home / "tessera-server.json").read_text())["pid"])
            time.sleep(args.settle_s)
            pids = tree(root)
            before = {p: cpu_ticks(p) for p in pids}
            rss: list[int] = []
            t1 = time.monotonic()
            while time.monotonic() - t1 < args.sample_s:
                rss.append(sum(rss_kib(p) for p in tree(root)))
                time.sleep(min(5.0, max(0.0, args.sample_s - (time.monotonic() - t1))))
            elapsed = time.monotonic() - t1
            after_pids = tree(root)
            per = {p: (cpu_ticks(p) or 0) - (before.get(p) or 0) for p in after_pids}
            ticks = sum(per.values())
            procs = {n: round(100 * per[p] * TICK_S / elapsed, 2) for p, n in names(after_pids)}
        finally:
            subprocess.run([str(EXE), "server", "stop"], cwd=tmp, env=env, capture_output=True)
    print(
        json.dumps(
            {
                "settings": "prefect-defaults" if args.prefect_defaults else "tessera",
                "cpu_pct_of_one_core": round(100 * ticks * TICK_S / elapsed, 2),
                "cpu_s": round(ticks * TICK_S, 2),
                "sample_s": round(elapsed, 1),
                "rss_mib_mean": round(statistics.mean(rss) / 1024, 1),
                "rss_mib_max": round(max(rss) / 1024, 1),
                "cpu_pct_by_process": procs,
                "start_s": round(start_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
