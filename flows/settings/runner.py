"""Task runner choice: threads by default, prefect-dask's DaskTaskRunner when asked (a local
cluster, a scheduler's address, or a cluster class such as dask-jobqueue's SLURMCluster).

Every Dask worker must run the same Tessera as the command: the runner checks them when it
connects and refuses, in one line naming the worker, one that does not. Workers that may sit
on other hosts report their task runs to Prefect's API, so a scheduler address or a cluster
class needs ``PREFECT_API_URL`` set to a server they can reach.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from tessera.flows.settings.schema import RunnerParams


class WorkerMismatchError(Exception):
    """A Dask worker runs another Tessera, or none joined in time; one line."""

    one_line = True


def check_workers(client: Any, want: int, within_s: float) -> None:
    """Wait (``within_s`` at most) for ``want`` workers and refuse any that runs another
    Tessera than this process."""
    from tessera.models.version import identity

    try:
        client.wait_for_workers(want, timeout=within_s)
    except TimeoutError:
        have = len(client.scheduler_info().get("workers", {}))
        raise WorkerMismatchError(
            f"Dask: {have} of {want} workers joined within {within_s:.0f} s"
        ) from None
    mine = identity()
    try:
        theirs = client.run(identity)  # each worker imports and runs its own
    except Exception as exc:  # a worker that cannot import Tessera at all
        raise WorkerMismatchError(
            f"Dask workers cannot run Tessera's code ({type(exc).__name__}: {exc}); "
            "install the same Tessera on every worker"
        ) from None
    for worker, ident in sorted(theirs.items()):
        if ident != mine:
            raise WorkerMismatchError(
                f"Dask worker {worker} runs Tessera {ident}, this command {mine}; "
                "install the same Tessera on every worker"
            )


def _checked_runner(want: int, within_s: float, **kwargs: Any) -> Any:
    from prefect_dask import DaskTaskRunner

    class CheckedDaskTaskRunner(DaskTaskRunner):
        """prefect-dask's runner that checks the workers when its client connects."""

        @property
        def client(self) -> Any:
            fresh = self._client is None
            client = super().client
            if fresh:
                check_workers(client, want, within_s)
            return client

        def duplicate(self) -> Any:
            return _checked_runner(want, within_s, **kwargs)

    return CheckedDaskTaskRunner(**kwargs)


def make_task_runner(p: RunnerParams) -> Any:
    """A Prefect task runner for ``p``; raises ValueError for a cluster Prefect's API cannot
    follow (no ``PREFECT_API_URL``)."""
    remote = p.address or p.cluster_class
    if remote and not os.environ.get("PREFECT_API_URL"):
        what = "runner.address" if p.address else "runner.cluster_class"
        raise ValueError(
            f"{what}: Dask workers report their task runs to Prefect's API, and none is set; "
            "export PREFECT_API_URL with a `prefect server` they can reach "
            "(`tessera cluster up` starts one)"
        )
    if p.kind == "dask" or remote:
        client = {"timeout": p.connect_timeout_s}
        if p.address:
            return _checked_runner(1, p.connect_timeout_s, address=p.address, client_kwargs=client)
        if p.cluster_class:
            return _checked_runner(
                p.n_workers,
                p.connect_timeout_s,
                cluster_class=p.cluster_class,
                cluster_kwargs=p.cluster_kwargs,
                adapt_kwargs={"minimum": p.n_workers, "maximum": p.n_workers},
                client_kwargs=client,
            )
        return _checked_runner(
            p.n_workers,
            p.connect_timeout_s,
            cluster_kwargs={
                "n_workers": p.n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
                "local_directory": tempfile.gettempdir(),
            },
            client_kwargs=client,
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=p.max_workers)
