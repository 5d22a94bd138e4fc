"""Daemons this command starts and later stops: each in its own process group, its log in a
file, recorded by PID and command line so that only what was started here is ever stopped.

Every wait is bounded: a daemon that is not healthy in time is stopped again and reported in
one line with the last line of its log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class ClusterError(Exception):
    """A daemon could not be started or reached; the message is one line."""

    one_line = True


class Daemon(BaseModel):
    """A started process: what to stop, and how to recognise it was ours."""

    name: str
    pid: int
    started: int  # the kernel's start time of the process: a reused PID has another
    argv: list[str]
    log: str
    stop_signal: int = signal.SIGTERM  # PostgreSQL: SIGINT, its fast shutdown


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def log_tail(path: str | Path) -> str:
    """The last non-empty line of a log ("no log" when there is none)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    return next((ln.strip()[:300] for ln in reversed(lines) if ln.strip()), "no log")


def start(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Daemon:
    """Start ``argv`` in a new session (its own process group), output appended to ``log``;
    ``user``: run it as that user (``runuser``), as PostgreSQL and munge require."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["runuser", "-u", user, "--", *argv] if user else list(argv)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
            )  # fmt: skip
        except FileNotFoundError:
            raise ClusterError(f"{name}: {cmd[0]} is not installed") from None
    return Daemon(
        name=name, pid=proc.pid, started=start_time(proc.pid) or 0, argv=cmd, log=str(log),
        stop_signal=stop_signal,
    )  # fmt: skip


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def ours(d: Daemon) -> bool:
    """Whether ``d.pid`` still runs the process we started (same start time: not a reused
    PID, not a zombie)."""
    return start_time(d.pid) == d.started


def wait_until(check: Callable[[], Any], within_s: float, d: Daemon, what: str) -> Any:
    """Call ``check`` until it answers something true, within ``within_s``; a daemon that
    dies or does not get there is stopped and reported in one line with its log's last line."""
    deadline = time.monotonic() + within_s
    try:
        while True:
            try:
                got = check()
            except Exception:
                got = None
            if got:
                return got
            if not ours(d) or time.monotonic() > deadline:
                why = "exited" if not ours(d) else f"not {what} within {within_s:.0f} s"
                raise ClusterError(f"{d.name}: {why} (log {d.log}: {log_tail(d.log)})")
            time.sleep(0.25)
    except BaseException:  # a failure, or the command interrupted while it waited
        stop(d)
        raise


def stop(d: Daemon, grace_s: float = 20.0) -> bool:
    """Stop ``d``'s process group: its stop signal, then SIGKILL after ``grace_s``. Does
    nothing (and answers False) when the PID is no longer the process we started."""
    if not ours(d):
        return False
    try:
        os.killpg(d.pid, d.stop_signal)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and ours(d):
        _reap(d.pid)
        time.sleep(0.2)
    if ours(d):
        try:
            os.killpg(d.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(d.pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process (a zombie still has a cmdline)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
