"""One local Prefect server per Prefect home, started on first use and reused by every command.

Without ``PREFECT_API_URL``, Prefect starts a temporary API for each command, which costs
10-20 s. Instead, the first command starts ``prefect server start`` in the background (bound
to 127.0.0.1, the UI included) and says so; later commands find it through
``$PREFECT_HOME/tessera-server.json`` and start in seconds. The server stops by itself after
``TESSERA_SERVER_IDLE_MINUTES`` (default 30) without a command, or with
``tessera server stop``.

``TESSERA_PREFECT_API``: ``local`` (the default) or ``ephemeral`` (Prefect's temporary API per
command, nothing left running). A ``PREFECT_API_URL`` always wins.

A new home's database is a copy of an empty one made once per user and Prefect version
(:func:`seed_database`), so that the first start costs ~4 s rather than ~13 s of migrations.

The server runs without the services Tessera does not use, and with the loops of those it
keeps slowed down (:data:`QUIET_SERVICES`); a variable the user set wins. Every server is also
recorded in the user's registry (:mod:`tessera.flows.local_server.server_records`), so that
``tessera server status`` lists each project's and ``tessera server stop --all`` stops them.

Run as ``python -m tessera.flows.local_server.api HOME PORT IDLE_MINUTES``, this module is the
watchdog that owns the server process.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tessera.flows.local_server.server_records import (
    STATE_FILE,
    USERS_FILE,
    ServerRecord,
    forget,
    read_state,
    record,
    stop_server,
)
from tessera.tasks.cluster.processes import free_port, ours, start_time
from tessera.tasks.store.templates import TemplateError, cache_folder, copy_new, template

START_LOCK = "tessera-server.start.lock"
LOG_FILE = "tessera-server.log"
DEFAULT_IDLE_MINUTES = 30.0
DATABASE = "prefect.db"  # Prefect's own default, in the home
# the variables that point a Prefect server at a database of the user's choosing
DATABASE_VARIABLES = (
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
)
STARTUP_TIMEOUT_S = 120.0
POLL_S = 5.0

# Prefect server services, as the local server runs them (a variable the user set wins).
QUIET_SERVICES: dict[str, str] = {
    # off: automations (reactive and proactive triggers, their actions); Tessera defines none
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    # off: failing paused runs that time out; no Tessera flow pauses
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    # off: revoking expired concurrency-slot leases; Tessera sets no concurrency limits
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    # kept for `tessera serve`: cron runs are created days ahead, so a 5-minute loop misses
    # none; a new or changed deployment gets its runs within 30 s (Prefect: 60 s and 5 s)
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "300",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "30",
    # kept, slower: marking runs Late (5 s), workers and deployments not ready (15 s), the
    # subflows and tasks of a cancelled run cancelled (20 s), worker clean-up leases (5 s)
    "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "60",
    "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_LOOP_SECONDS": "60",
}


class ServerError(Exception):
    """The local server could not be started; the message is one line."""

    one_line = True


def mode() -> str:
    """``local`` or ``ephemeral`` (``TESSERA_PREFECT_API``)."""
    value = os.environ.get("TESSERA_PREFECT_API", "local")
    if value not in ("local", "ephemeral"):
        raise ServerError(f"TESSERA_PREFECT_API={value!r}: expected local or ephemeral")
    return value


def idle_minutes() -> float:
    """Minutes without a command after which the server stops itself."""
    text = os.environ.get("TESSERA_SERVER_IDLE_MINUTES", str(DEFAULT_IDLE_MINUTES))
    try:
        return float(text)
    except ValueError:
        raise ServerError(f"TESSERA_SERVER_IDLE_MINUTES={text!r}: expected minutes") from None


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def running_url(home: Path) -> str | None:
    """The URL of this home's server if its watchdog is the recorded process and it is healthy."""
    state = read_state(home)
    if state and ours(state.daemons()[0]) and healthy(state.url):
        return state.url
    return None


def server_environment(home: Path) -> dict[str, str]:
    """The environment of the server started for ``home``: :data:`QUIET_SERVICES` under the
    caller's own variables."""
    return {**QUIET_SERVICES, **os.environ, "PREFECT_HOME": str(home)}


# Made once per user and version: the migrated schema and Prefect's block types, as a server
# leaves them on its first start (Prefect's own startup steps, run without a server)
_MAKE_DATABASE = """
import asyncio
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration

async def main():
    db = provide_database_interface()
    await db.create_db()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)

asyncio.run(main())
"""
# a server's first start on a copy: its block types are registered already (a later start
# registers them again, as Prefect does, for block types installed since)
SEEDED_START = {"PREFECT_SERVER_BLOCKS_REGISTER_ON_START": "false"}


def empty_database() -> Path:
    """An empty SQLite database of the installed Prefect, made once per user and version (~9 s
    of CPU), then copied: a server started on a copy is healthy in ~3.5 s, against ~13 s when
    it makes a new one itself."""
    name = f"empty-{importlib.metadata.version('prefect')}.db"
    env = {k: v for k, v in os.environ.items() if k not in DATABASE_VARIABLES}
    env["PREFECT_HOME"] = str(cache_folder("prefect"))  # not the user's: nothing lands there
    env[DATABASE_VARIABLES[0]] = "sqlite+aiosqlite:///{path}"
    return template("prefect", name, ["{python}", "-c", _MAKE_DATABASE], env, "Prefect database")


def seed_database(database: Path) -> bool:
    """Copy :func:`empty_database` to ``database`` if there is none (an existing file is never
    replaced); whether it did (then start the server with :data:`SEEDED_START`). A template
    that cannot be made is no error: the server then makes a new database itself."""
    if database.exists():
        return False
    try:
        return copy_new(empty_database(), database)
    except (TemplateError, OSError):
        return False


def _log_tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def start(home: Path, idle: float, notice: TextIO | None = sys.stderr) -> str:
    """Start this home's server (unless one is up) and wait until it is healthy; its URL."""
    home = home.absolute()  # the watchdog runs in it: a relative path would name another
    home.mkdir(parents=True, exist_ok=True)
    with open(home / START_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others then reuse it
        url = running_url(home)
        if url:
            return url
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        log = home / LOG_FILE
        if notice:  # before the seeding: the first on a machine makes the template (~10 s)
            print(f"tessera: starting a local Prefect server (log: {log}) ...", file=notice)
        env = server_environment(home)
        if not any(env.get(name) for name in DATABASE_VARIABLES):
            if seed_database(home / DATABASE):  # Prefect's default database, made by a copy
                env = {**SEEDED_START, **env}
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tessera.flows.local_server.api",
                    str(home),
                    str(port),
                    str(idle),
                ],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=True,  # not stopped by the terminal's Ctrl-C
                env=env,
                cwd=home,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not healthy(url, timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                raise ServerError(
                    f"{log}: the local Prefect server did not start: {_log_tail(log)}"
                )
            time.sleep(0.25)
        if notice:
            print(
                f"tessera: Prefect server and UI at {url.removesuffix('/api')} (pid {proc.pid}); "
                f"it stops after {idle:g} idle minutes, or with `tessera server stop`",
                file=notice,
            )
        return url


def stop(home: Path) -> int | None:
    """Stop this home's server; the watchdog's pid, or None when none was running. Only the
    recorded processes are signalled: a record whose PIDs now name others is just removed."""
    state = read_state(home.absolute())
    if state is None:
        (home / STATE_FILE).unlink(missing_ok=True)  # unreadable, or from an older Tessera
        return None
    return state.pid if stop_server(state) else None


@contextlib.contextmanager
def using_local_server(home: Path, idle: float) -> Iterator[str]:
    """The URL of this home's server (started if needed), kept up while the block runs."""
    home.mkdir(parents=True, exist_ok=True)
    users = open(home / USERS_FILE, "a+")
    try:
        fcntl.flock(users, fcntl.LOCK_SH)  # waits while an idle server is being stopped
        yield running_url(home) or start(home, idle)
    finally:
        with contextlib.suppress(OSError):
            os.utime(home / USERS_FILE)  # the idle clock starts again now
        fcntl.flock(users, fcntl.LOCK_UN)
        users.close()


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """Run the block's flows against ``PREFECT_API_URL``, else this home's local server (or
    Prefect's temporary API when ``TESSERA_PREFECT_API=ephemeral``).

    Flow heartbeats are off unless ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is set: stopping their
    thread costs up to a second per flow, and only a zombie-flow automation reads them.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        temporary_settings,
    )

    updates: dict[Any, Any] = {}
    if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" not in os.environ:
        updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    if PREFECT_API_URL.value() or mode() == "ephemeral":
        with temporary_settings(updates=updates):
            yield
        return
    with using_local_server(Path(PREFECT_HOME.value()), idle_minutes()) as url:
        with temporary_settings(updates={**updates, PREFECT_API_URL: url}):
            yield


# The watchdog: owns the server process, stops it when idle or asked to.


def _idle(home: Path, idle_s: float, users: TextIO) -> bool:
    """No command holds the users' lock, and none ran for ``idle_s``; keeps the lock if so."""
    try:
        last = (home / USERS_FILE).stat().st_mtime
    except OSError:
        last = 0.0
    if time.time() - last < idle_s:
        return False
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def watchdog(home: Path, port: int, idle_minutes: float) -> int:
    """Run ``prefect server start`` on 127.0.0.1:``port`` until idle or SIGTERM."""
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port), "--analytics-off"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    state = ServerRecord(
        home=str(home), url=url, pid=os.getpid(), started=start_time(os.getpid()) or 0,
        server_pid=server.pid, server_started=start_time(server.pid) or 0,
        log=str(home / LOG_FILE), since=time.time(), idle_minutes=idle_minutes,
    )  # fmt: skip
    (home / USERS_FILE).touch()
    record(state)
    rc = 0
    with open(home / USERS_FILE, "a+") as users:
        while not stopping:
            if server.poll() is not None:
                rc = server.returncode or 1
                break
            if _idle(home, idle_minutes * 60, users):
                print(f"idle for {idle_minutes:g} minutes: stopping", flush=True)
                break
            for _ in range(int(POLL_S * 10)):
                if stopping:
                    break
                time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        forget(state)
    return rc


if __name__ == "__main__":
    sys.exit(watchdog(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
