"""PostgreSQL for the cluster: a database cluster of its own (``initdb``), one server on
127.0.0.1, and a database per service (MLflow's tracking store, Prefect's API).

The server runs as the ``postgres`` user (it refuses root), in the foreground under this
module's control; its socket lives in the cluster's folder, never in /var/run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tessera.tasks.cluster.processes import ClusterError, Daemon, start, wait_until

USER = "postgres"
ROLE, PASSWORD = "tessera", "tessera"
DATABASES = ("mlflow", "prefect")


def _bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in versions:
        if (folder / name).is_file():
            return str(folder / name)
    raise ClusterError(f"postgres: {name} not found; install Debian's postgresql package")


def _as_postgres(argv: list[str], timeout: float = 60) -> str:
    try:
        res = subprocess.run(
            ["runuser", "-u", USER, "--", *argv], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"postgres: {argv[0]} did not finish within {timeout:.0f} s") from None
    if res.returncode != 0:
        why = (res.stderr.strip() or res.stdout.strip()).splitlines() or ["failed"]
        raise ClusterError(f"postgres: {Path(argv[0]).name}: {why[-1]}")
    return res.stdout


def url(port: int, database: str, driver: str = "psycopg2") -> str:
    """SQLAlchemy URL of ``database`` (``psycopg2`` for MLflow, ``asyncpg`` for Prefect)."""
    return f"postgresql+{driver}://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{database}"


def data_folder(cluster: Path) -> Path:
    """Where the server of the cluster in ``cluster`` keeps its data: the postgres user must
    reach it, which a folder below a private one (a home, pytest's temporary folders) is
    not, so it lives in the system's temporary folder, named after the cluster's."""
    digest = hashlib.sha256(str(cluster.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tessera-postgres-{digest}"


def start_postgres(folder: Path, port: int, within_s: float = 60) -> Daemon:
    """Initialise ``folder`` (once; see :func:`data_folder`), start the server on ``port``
    and create the role and databases; the server is stopped again if any step fails."""
    data, sock, log = folder / "data", folder / "socket", folder / "postgres.log"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock.mkdir(exist_ok=True)
    shutil.chown(folder, USER, USER)
    shutil.chown(sock, USER, USER)
    if not (data / "PG_VERSION").is_file():
        _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", USER], 120)
    open(log, "a").close()
    shutil.chown(log, USER, USER)
    daemon = start(
        "postgres",
        [_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
         "-c", "listen_addresses=127.0.0.1"],
        log, user=USER, stop_signal=signal.SIGINT,
    )  # fmt: skip
    psql = [_bin("psql"), "-h", str(sock), "-p", str(port), "-U", USER, "-tA"]
    wait_until(lambda: _ready(psql), within_s, daemon, "accepting connections")
    try:
        roles = _as_postgres([*psql, "-c", f"SELECT 1 FROM pg_roles WHERE rolname='{ROLE}'"])
        if not roles.strip():
            _as_postgres([*psql, "-c", f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"])
        have = _as_postgres([*psql, "-c", "SELECT datname FROM pg_database"]).split()
        for db in DATABASES:
            if db not in have:
                _as_postgres([*psql, "-c", f"CREATE DATABASE {db} OWNER {ROLE}"])
    except BaseException:
        from tessera.tasks.cluster.processes import stop

        stop(daemon)
        raise
    return daemon


def _ready(psql: list[str]) -> bool:
    res = subprocess.run(
        ["runuser", "-u", USER, "--", *psql, "-c", "SELECT 1"],
        capture_output=True, text=True, timeout=10, env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
    )  # fmt: skip
    return res.returncode == 0 and res.stdout.strip() == "1"
