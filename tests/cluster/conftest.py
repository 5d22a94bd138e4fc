"""The cluster tier: one local cluster (``tessera cluster up``'s code: PostgreSQL, S3, the MLflow
and Prefect servers, Dask, Slurm with two nodes) for the session, stopped by its record at the
end. Where the daemons cannot run (not root, not installed), the tier is skipped in one line
naming the command that installs them; with ``TESSERA_REQUIRE_CLUSTER=1`` it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.tasks.cluster.cluster import INSTALL, PROFILE_FILE, ClusterState, down, up


def _missing() -> str | None:
    """Why the cluster cannot start here, or None."""
    if os.geteuid() != 0:
        return "not root"
    for binary in ("slurmctld", "slurmd", "sbatch", "munged", "runuser"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed"
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        return "PostgreSQL is not installed"
    for module in ("moto", "boto3", "psycopg2", "dask_jobqueue", "dvc_s3"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is missing (make setup installs .[cluster])"
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    """The session's cluster; its folder holds every daemon's log."""
    why = _missing()
    if why:
        line = f"cluster tier: {why}; install the daemons with: {INSTALL}"
        if os.environ.get("TESSERA_REQUIRE_CLUSTER") == "1":
            pytest.fail(line)
        pytest.skip(line)
    folder = tmp_path_factory.mktemp("cluster")
    state = up(folder, progress=lambda line: print(f"cluster: {line}", file=sys.stderr))
    try:
        yield state
    finally:
        down(folder)


def client_env(cluster: ClusterState, profile: bool = True) -> dict[str, str]:
    """A child process's environment on the cluster (its servers, S3, Slurm) with its profile
    (Dask and Slurm runners) or without (threads, local training); the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(cluster.env)
    env["TESSERA_PROFILE"] = str(Path(cluster.folder) / PROFILE_FILE) if profile else ""
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@pytest.fixture
def cluster_env(cluster: ClusterState) -> dict[str, str]:
    """:func:`client_env` with the cluster's profile."""
    return client_env(cluster)
