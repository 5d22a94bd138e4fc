"""Task runner choice: threads by default, prefect-dask's DaskTaskRunner when asked."""

from __future__ import annotations

import tempfile
from typing import Any

from tessera.flows.config import RunnerParams


def make_task_runner(p: RunnerParams) -> Any:
    """A Prefect task runner for ``p``."""
    if p.kind == "dask" or p.address:
        from prefect_dask import DaskTaskRunner

        if p.address:
            return DaskTaskRunner(address=p.address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": p.n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
                "local_directory": tempfile.gettempdir(),
            }
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=p.max_workers)
