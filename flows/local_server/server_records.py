"""Every local Prefect server Tessera started for this user, whichever project it serves.

Each server's watchdog writes one small JSON record under ``$XDG_STATE_HOME/tessera/servers``
(default ``~/.local/state/tessera/servers``), named after its Prefect home, when the server is
up, and removes it when it stops. A record names the watchdog and the server by PID and by
the kernel's start time of each process, so a PID that now belongs to another process is never
signalled: such a record, like one whose processes are gone, is stale and only removed.

Idle time is the time since the last command that used the server finished: every command
touches ``$PREFECT_HOME/tessera-server.users`` when it is done and holds a shared lock on it
while it runs. It is the clock the watchdog stops an idle server by.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from tessera.flows.settings.env import user_state_dir
from tessera.tasks.base.files import atomic_write_bytes
from tessera.tasks.cluster.processes import Daemon, ours, start_time, stop

STATE_FILE = "tessera-server.json"  # this home's record, beside its database
USERS_FILE = "tessera-server.users"  # commands hold a shared lock on it while they run
STOP_GRACE_S = 30.0  # the watchdog gives its server 20 s before it kills it


class ServerRecord(BaseModel):
    """One server Tessera started: where it serves, and how to recognise its processes."""

    home: str  # its Prefect home (``.prefect/`` of a project, or the user's)
    url: str
    pid: int  # the watchdog, which owns the server
    started: int  # the watchdog's start time (clock ticks after boot): a reused PID has another
    server_pid: int
    server_started: int
    log: str
    since: float  # when it started (seconds since the epoch)
    idle_minutes: float  # it stops itself after this long without a command

    def daemons(self) -> list[Daemon]:
        """The watchdog, then the server, as the process helpers know them."""
        return [
            Daemon(name="watchdog", pid=self.pid, started=self.started, argv=[], log=self.log),
            Daemon(
                name="prefect server", pid=self.server_pid, started=self.server_started,
                argv=[], log=self.log,
            ),
        ]  # fmt: skip

    def running(self) -> bool:
        """Whether the watchdog or the server is still the process recorded."""
        return any(ours(d) for d in self.daemons())


def registry_dir() -> Path:
    """The folder of the user's server records."""
    return user_state_dir() / "servers"


def registry_file(home: Path) -> Path:
    """The record of ``home``'s server in the user's registry (one per Prefect home)."""
    return registry_dir() / f"{hashlib.sha256(str(home).encode()).hexdigest()[:16]}.json"


def read_record(path: Path) -> ServerRecord | None:
    """The record in ``path``, or None when it is missing or unreadable."""
    try:
        return ServerRecord.model_validate_json(path.read_text())
    except (OSError, ValueError, ValidationError):
        return None


def read_state(home: Path) -> ServerRecord | None:
    """``home``'s record, or None. A record an older Tessera wrote (no start times) is taken
    over while its PID still runs the watchdog of ``home``, then written anew."""
    rec = read_record(home / STATE_FILE)
    if rec is None and (rec := _take_over(home)) is not None:
        with contextlib.suppress(OSError):
            record(rec)
    return rec


# the watchdog's module, and where Tessera releases before the flows/ rooms started it from
WATCHDOG_MODULES = ("tessera.flows.local_server.api", "tessera.flows.local_api")


def _take_over(home: Path) -> ServerRecord | None:
    try:
        old = json.loads((home / STATE_FILE).read_text())
        pid, server_pid, url = int(old["pid"]), int(old["server_pid"]), str(old["url"])
        since = (home / STATE_FILE).stat().st_mtime  # written when the server started
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if argv[1] != "-m" or argv[2] not in WATCHDOG_MODULES or argv[3] != str(home):
            return None
        idle_minutes = float(argv[5])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    started, server_started = start_time(pid), start_time(server_pid)
    if not (started and server_started):
        return None
    return ServerRecord(
        home=str(home), url=url, pid=pid, started=started, server_pid=server_pid,
        server_started=server_started, log=str(old.get("log", "")), since=since,
        idle_minutes=idle_minutes,
    )  # fmt: skip


def record(rec: ServerRecord) -> None:
    """Record a started server in its home and in the user's registry."""
    home = Path(rec.home)
    atomic_write_bytes(home / STATE_FILE, rec.model_dump_json().encode())
    with contextlib.suppress(OSError):  # the server works without it; status won't list it
        atomic_write_bytes(registry_file(home), rec.model_dump_json().encode())


def forget(rec: ServerRecord) -> None:
    """Remove ``rec`` from its home and the registry (only files that still hold it)."""
    home = Path(rec.home)
    for path in (home / STATE_FILE, registry_file(home)):
        if read_record(path) == rec:
            path.unlink(missing_ok=True)


def recorded() -> list[ServerRecord]:
    """Every record in the user's registry, oldest first; unreadable files are removed."""
    out = []
    for path in sorted(registry_dir().glob("*.json")):
        rec = read_record(path)
        if rec is None:
            path.unlink(missing_ok=True)
        else:
            out.append(rec)
    return sorted(out, key=lambda r: r.since)


def stop_server(rec: ServerRecord, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop the watchdog (which stops its server), then the server if it outlived it, each only
    while it is still the recorded process; then forget the record. Whether anything ran."""
    was = False
    for daemon in rec.daemons():
        was = stop(daemon, grace_s) or was
    forget(rec)
    return was


@dataclass(frozen=True)
class ServerState:
    """What ``tessera server status`` says about one recorded server."""

    record: ServerRecord
    state: Literal["in use", "idle", "stale"]
    uptime_s: float
    idle_s: float  # since the last command that used it finished


def _in_use(users: Path) -> bool:
    """Whether a command holds its shared lock on ``users`` (tried without waiting)."""
    try:
        with open(users, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        pass
    return False


def server_state(rec: ServerRecord, now: float | None = None) -> ServerState:
    """The state of ``rec``'s server: in use, idle (and since when), or stale."""
    now = time.time() if now is None else now
    users = Path(rec.home) / USERS_FILE
    try:
        last = users.stat().st_mtime
    except OSError:
        last = rec.since
    if not rec.running():
        state: Literal["in use", "idle", "stale"] = "stale"
    else:
        state = "in use" if _in_use(users) else "idle"
    return ServerState(rec, state, max(0.0, now - rec.since), max(0.0, now - last))


def duration(seconds: float) -> str:
    """``seconds`` for people: 45 s, 12 min, 1 h 04 min, 2 d 03 h."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600:02d} h"
