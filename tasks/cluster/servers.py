"""The cluster's tracking and orchestration servers on 127.0.0.1: ``mlflow server`` on
PostgreSQL with its artifacts proxied to S3 (clients need only ``MLFLOW_TRACKING_URI``), and
``prefect server`` on PostgreSQL, reachable by every worker."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from tessera.tasks.cluster.postgres import url as pg_url
from tessera.tasks.cluster.processes import Daemon, start, wait_until
from tessera.tasks.cluster.s3 import client_environment


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def healthy(url: str) -> bool:
    """Whether ``url`` answers 200 within 2 s."""
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def start_mlflow(
    folder: Path, port: int, pg_port: int, s3_port: int, within_s: float = 120
) -> Daemon:
    """``mlflow server`` with its backend store in PostgreSQL and artifacts under
    ``s3://tessera/mlflow``, one worker, no job execution (7 more processes, 61 s to start)."""
    env = {
        **os.environ,
        **client_environment(s3_port),
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    daemon = start(
        "mlflow",
        [_bin("mlflow"), "server", "--backend-store-uri", pg_url(pg_port, "mlflow"),
         "--artifacts-destination", "s3://tessera/mlflow", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        folder / "mlflow.log", env=env,
    )  # fmt: skip
    wait_until(lambda: healthy(f"http://127.0.0.1:{port}/health"), within_s, daemon, "healthy")
    return daemon


def start_prefect(folder: Path, port: int, pg_port: int, within_s: float = 120) -> Daemon:
    """``prefect server`` on PostgreSQL (its own home under ``folder``), no UI."""
    home = folder / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": pg_url(pg_port, "prefect", "asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    daemon = start(
        "prefect",
        [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--analytics-off", "--no-ui"],
        folder / "prefect.log", env=env,
    )  # fmt: skip
    wait_until(lambda: healthy(f"http://127.0.0.1:{port}/api/health"), within_s, daemon, "healthy")
    return daemon
