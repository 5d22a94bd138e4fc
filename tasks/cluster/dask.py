"""A Dask scheduler and worker processes on 127.0.0.1 (one thread each), started from the
cluster's folder: a worker's working folder is never the project's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tessera.tasks.cluster.processes import Daemon, listening, start, wait_until


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# what an idle scheduler and worker spend CPU on, slowed down or off (a variable the user set
# wins): the statistical profiler (a sample every 10 ms, for the dashboard these daemons do
# not serve), the event-loop tick (every 20 ms, to warn of a blocked loop) and the system
# monitor (every 500 ms). Measured idle over 30 s on a 2-core VM: worker 3.5-4.4 % of a core
# -> 0.7 %, scheduler 1.8-2.4 % -> 0.4 %.
QUIET_DASK: dict[str, str] = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
}


def _quiet(env: dict[str, str] | None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    return {**QUIET_DASK, **base}


def start_scheduler(folder: Path, port: int, within_s: float = 60) -> Daemon:
    """``dask scheduler`` on ``port``, no dashboard."""
    daemon = start(
        "dask-scheduler",
        [_bin("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        folder / "dask-scheduler.log", env=_quiet(None), cwd=folder,
    )  # fmt: skip
    wait_until(lambda: listening(port), within_s, daemon, "listening")
    return daemon


def start_worker(
    folder: Path, scheduler: str, name: str, env: dict[str, str] | None = None
) -> Daemon:
    """One ``dask worker`` process (one thread, no nanny: a killed worker stays dead, as a
    lost machine would) with its scratch space under ``folder``."""
    return start(
        name,
        [_bin("dask"), "worker", scheduler, "--name", name, "--nthreads", "1", "--no-nanny",
         "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(folder / name)],
        folder / f"{name}.log", env=_quiet(env), cwd=folder,
    )  # fmt: skip


def wait_for_workers(scheduler: str, n: int, within_s: float, daemon: Daemon) -> None:
    """Wait until ``n`` workers have joined ``scheduler``."""
    from distributed import Client

    with Client(scheduler, timeout=within_s) as client:

        def joined() -> bool:
            return len(client.scheduler_info().get("workers", {})) >= n

        wait_until(joined, within_s, daemon, f"joined by {n} workers")
