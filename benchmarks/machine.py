"""How busy the machine is outside the benchmark: the share of its CPUs in use and the
processes using them, sampled from ``/proc``, so that a gate that fails on a loaded machine
says so, and a wait (bounded) for the load that a previous command left to settle."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_busy_idle() -> tuple[int, int]:
    """(busy, idle) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, idle


def _process_jiffies() -> dict[int, int]:
    """utime + stime of every process now, by PID."""
    out: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            out[int(d.name)] = int(rest[11]) + int(rest[12])
    return out


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:100] or "?"


def sample(seconds: float = 1.0, top: int = 3) -> dict[str, Any]:
    """The share of all CPUs busy over ``seconds``, and the ``top`` processes by CPU share
    (of one core) in that window, this process excluded."""
    b0, i0 = _cpu_busy_idle()
    p0 = _process_jiffies()
    time.sleep(seconds)
    b1, i1 = _cpu_busy_idle()
    p1 = _process_jiffies()
    busy = (b1 - b0) / max((b1 - b0) + (i1 - i0), 1)
    me = os.getpid()
    used = sorted(
        ((j - p0.get(pid, 0), pid) for pid, j in p1.items() if pid != me),
        reverse=True,
    )[:top]
    return {
        "busy": round(busy, 3),
        "loadavg": [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]],
        "top": [
            {"pid": pid, "cpu": round(j / CLK_TCK / seconds, 2), "cmd": _command(pid)}
            for j, pid in used
            if j > 0
        ],
    }


def cpu_loop_seconds(n: int = 10_000_000) -> float:
    """Seconds of a fixed pure-Python loop: this CPU's speed now, for comparing runs across
    machines and times (the hosts of these VMs vary it by tens of percent)."""
    t0 = time.perf_counter()
    sum(range(n))
    return round(time.perf_counter() - t0, 3)


def wait_quiet(limit_s: float = 60.0, busy_below: float = 0.15) -> dict[str, Any]:
    """Sample until less than ``busy_below`` of the CPUs are busy, ``limit_s`` at most; the
    last sample, with the seconds waited and whether the machine was quiet."""
    t0 = time.monotonic()
    while True:
        s = sample()
        waited = time.monotonic() - t0
        if s["busy"] < busy_below or waited >= limit_s:
            quiet = s["busy"] < busy_below
            return {
                **s,
                "quiet": quiet,
                "waited_s": round(waited, 1),
                "cpu_loop_s": cpu_loop_seconds(),
            }
