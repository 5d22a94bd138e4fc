"""The local cluster as one unit: up (every engine, on free ports of 127.0.0.1), status, and
down (only what ``up`` started, by the PIDs and command lines it recorded).

``up`` writes, in its folder, ``cluster.json`` (the record), ``env.sh`` (the variables a
client needs: Prefect's and MLflow's URLs, the S3 endpoint and keys, ``SLURM_CONF``) and
``profile.yaml`` (a Tessera profile: that environment plus the ``runner`` section that puts
mapped tasks on Dask and trainings on Slurm). In a DVC project it also points the project's
local DVC config at the cluster's S3 remote, and ``down`` puts back what was there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from tessera.tasks.cluster import dask as dask_daemons
from tessera.tasks.cluster.postgres import data_folder, start_postgres
from tessera.tasks.cluster.processes import ClusterError, Daemon, free_port, ours, stop
from tessera.tasks.cluster.s3 import client_environment, start_s3
from tessera.tasks.cluster.servers import start_mlflow, start_prefect
from tessera.tasks.cluster.slurm_nodes import (
    NODES,
    slurm_environment,
    start_munge,
    start_slurm,
    stop_slurm,
)

STATE_FILE = "cluster.json"
ENV_FILE = "env.sh"
PROFILE_FILE = "profile.yaml"
DVC_REMOTE = "tessera-cluster"
DVC_URL = "s3://tessera/dvc"
DaskMode = Literal["workers", "slurm"]
INSTALL = (
    "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge postgresql"
)


class ClusterState(BaseModel):
    """What ``up`` started and wrote."""

    folder: str
    ports: dict[str, int]
    daemons: list[Daemon] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    runner: dict[str, Any] = Field(default_factory=dict)
    dvc: dict[str, str] | None = Field(
        default=None, description="The project whose local DVC default remote was set."
    )
    started_s: dict[str, float] = Field(default_factory=dict)


def read_state(folder: Path) -> ClusterState | None:
    """The record of the cluster in ``folder`` (None when there is none)."""
    try:
        return ClusterState.model_validate_json((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _save(state: ClusterState) -> None:
    from tessera.tasks.base.files import atomic_write_bytes

    folder = Path(state.folder)
    atomic_write_bytes(folder / STATE_FILE, state.model_dump_json(indent=1).encode())
    exports = "".join(f"export {k}={v}\n" for k, v in sorted(state.env.items()))
    atomic_write_bytes(folder / ENV_FILE, exports.encode())
    profile = {"env": state.env, "runner": state.runner}
    atomic_write_bytes(folder / PROFILE_FILE, yaml.safe_dump(profile, sort_keys=True).encode())


def _runner(folder: Path, dask_mode: DaskMode, scheduler: str | None) -> dict[str, Any]:
    """The profile's ``runner``: mapped tasks on the cluster's Dask, trainings as Slurm jobs
    (Lightning reaches the other ranks on 127.0.0.1: the node names do not resolve)."""
    runner: dict[str, Any] = {
        "kind": "dask",
        "n_workers": 2,
        "training": "slurm",
        "slurm": {"partition": "debug", "time_limit": "01:00:00",
                  "env": {"MASTER_ADDR": "127.0.0.1"}},
    }  # fmt: skip
    if dask_mode == "workers":
        return runner | {"address": scheduler}
    jobs = folder / "dask-jobs"
    return runner | {
        "cluster_class": "dask_jobqueue.SLURMCluster",
        "cluster_kwargs": {
            "cores": 1,
            "processes": 1,
            "memory": "1GB",
            "walltime": "01:00:00",
            "queue": "debug",
            "python": sys.executable,
            "scheduler_options": {"host": "127.0.0.1", "dashboard_address": None},
            "worker_extra_args": ["--host", "127.0.0.1"],
            "local_directory": str(jobs / "scratch"),
            "log_directory": str(jobs / "logs"),
        },
    }


def up(
    folder: Path,
    project: Path | None = None,
    dask_mode: DaskMode = "workers",
    progress: Any = None,
) -> ClusterState:
    """Start PostgreSQL, S3 (moto), the MLflow and Prefect servers, Dask (a scheduler and two
    workers, unless its workers are Slurm jobs) and Slurm (munge, a controller, two nodes);
    record them and write the client environment and the profile. Anything started is
    stopped again when a later step fails."""
    folder = folder.resolve()
    previous = read_state(folder)
    if previous is not None and any(ours(d) for d in previous.daemons):
        raise ClusterError(f"{folder}: a cluster is already up here (tessera cluster down)")
    if os.geteuid() != 0:
        raise ClusterError(
            f"the local cluster needs root (Slurm, PostgreSQL as postgres); {INSTALL}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    names = ("postgres", "s3", "mlflow", "prefect", "dask", "slurmctld", *NODES)
    ports = {name: free_port() for name in names}
    state = ClusterState(folder=str(folder), ports=ports)
    say = progress or (lambda line: None)

    def started(name: str, daemons: Daemon | list[Daemon] | None, t0: float) -> None:
        state.daemons.extend(
            [] if daemons is None else [daemons] if isinstance(daemons, Daemon) else daemons
        )
        state.started_s[name] = round(time.monotonic() - t0, 2)
        _save(state)
        say(f"{name}: up in {state.started_s[name]:.1f} s")

    main = threading.current_thread() is threading.main_thread()
    # a kill while starting stops what was started (signals reach the main thread only)
    previous_term = signal.signal(signal.SIGTERM, _interrupted) if main else None
    try:
        t = time.monotonic()
        started("postgres", start_postgres(data_folder(folder), ports["postgres"]), t)
        t = time.monotonic()
        started("s3", start_s3(folder, ports["s3"]), t)
        t = time.monotonic()
        started("mlflow", start_mlflow(folder, ports["mlflow"], ports["postgres"], ports["s3"]), t)
        t = time.monotonic()
        started("prefect", start_prefect(folder, ports["prefect"], ports["postgres"]), t)
        t = time.monotonic()
        started("munge", start_munge(folder), t)
        slurm = folder / "slurm"
        node_ports = {n: ports[n] for n in NODES}
        t = time.monotonic()
        started("slurm", start_slurm(slurm, ports["slurmctld"], node_ports), t)
        state.env = {
            "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            **client_environment(ports["s3"]),
            **slurm_environment(slurm / "slurm.conf"),
        }
        scheduler = None
        if dask_mode == "workers":
            t = time.monotonic()
            scheduler = f"tcp://127.0.0.1:{ports['dask']}"
            sched = dask_daemons.start_scheduler(folder, ports["dask"])
            workers = [
                dask_daemons.start_worker(folder, scheduler, f"dask-worker-{i}", _env(state))
                for i in (1, 2)
            ]
            dask_daemons.wait_for_workers(scheduler, 2, 60, sched)
            started("dask", [sched, *workers], t)
        state.runner = _runner(folder, dask_mode, scheduler)
        if project is not None and (project / ".dvc").is_dir():
            state.dvc = _point_dvc(project, ports["s3"])
        _save(state)
    except BaseException:
        down(folder)
        shutil.rmtree(data_folder(folder), ignore_errors=True)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous_term)
    return state


def _interrupted(signum: int, frame: Any) -> None:
    raise ClusterError("tessera cluster up: interrupted; what it had started is stopped")


def _env(state: ClusterState) -> dict[str, str]:
    return {**os.environ, **state.env}


def _dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dvc = str(Path(sys.executable).parent / "dvc")
    return subprocess.run(
        [dvc, *args], cwd=project, capture_output=True, text=True, timeout=120, check=False
    )


def _point_dvc(project: Path, s3_port: int) -> dict[str, str]:
    """Make the cluster's bucket the project's default DVC remote in its local config
    (``.dvc/config.local``, never committed); returns what to put back."""
    previous = _dvc(project, "remote", "default", "--local").stdout.strip()
    for args in (
        ("remote", "add", "--local", "-f", DVC_REMOTE, DVC_URL),
        ("remote", "modify", "--local", DVC_REMOTE, "endpointurl", f"http://127.0.0.1:{s3_port}"),
        ("remote", "default", "--local", DVC_REMOTE),
    ):
        res = _dvc(project, *args)
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or ["failed"])[-1]
            raise ClusterError(f"dvc {' '.join(args[:2])}: {why}")
    return {"project": str(project), "previous_default": previous}


def _unpoint_dvc(dvc: dict[str, str]) -> None:
    project = Path(dvc["project"])
    if not (project / ".dvc").is_dir():
        return
    _dvc(project, "remote", "remove", "--local", DVC_REMOTE)
    if dvc.get("previous_default"):
        _dvc(project, "remote", "default", "--local", dvc["previous_default"])


def down(folder: Path) -> list[str]:
    """Stop what ``up`` started in ``folder`` (Slurm's jobs first), newest first; put the
    project's DVC config back. Returns the names of the daemons stopped."""
    folder = folder.resolve()
    state = read_state(folder)
    if state is None:
        return []
    stopped = []
    slurm = [d for d in state.daemons if d.name == "slurmctld" or d.name.startswith("slurmd-")]
    if slurm:
        stop_slurm(folder / "slurm" / "slurm.conf", slurm)
        stopped += [d.name for d in slurm]
    for d in reversed(state.daemons):
        if d in slurm:
            continue
        if stop(d):
            stopped.append(d.name)
    if state.dvc:
        _unpoint_dvc(state.dvc)
    # the cluster's database: moto's objects are gone with it, so its records go too
    shutil.rmtree(data_folder(folder), ignore_errors=True)
    (folder / STATE_FILE).unlink(missing_ok=True)
    return stopped


def restart_postgres(folder: Path) -> Daemon:
    """Stop the cluster's PostgreSQL and start it again on its port (as an operator would
    restart a database under a running service); the record follows the new process."""
    folder = folder.resolve()
    state = read_state(folder)
    if state is None:
        raise ClusterError(f"{folder}: no cluster")
    old = next(d for d in state.daemons if d.name == "postgres")
    stop(old)
    new = start_postgres(data_folder(folder), state.ports["postgres"])
    state.daemons = [new if d.name == "postgres" else d for d in state.daemons]
    _save(state)
    return new


def status(folder: Path) -> dict[str, bool]:
    """Each recorded daemon and whether it still runs."""
    state = read_state(folder.resolve())
    return {} if state is None else {d.name: ours(d) for d in state.daemons}


def describe(state: ClusterState) -> str:
    """What runs where, one line per engine."""
    p = state.ports
    lines = [
        f"postgres   127.0.0.1:{p['postgres']} (databases mlflow, prefect)",
        f"s3         {state.env.get('AWS_ENDPOINT_URL')} (bucket tessera: dvc/, mlflow/, data/)",
        f"mlflow     {state.env.get('MLFLOW_TRACKING_URI')} (PostgreSQL, artifacts on S3)",
        f"prefect    {state.env.get('PREFECT_API_URL')} (PostgreSQL)",
        f"slurm      {', '.join(NODES)} (SLURM_CONF={state.env.get('SLURM_CONF')})",
        "dask       "
        + (state.runner.get("address") or "workers as Slurm jobs (dask_jobqueue.SLURMCluster)"),
    ]
    if state.dvc:
        lines.append(
            f"dvc        default remote {DVC_REMOTE} = {DVC_URL} in {state.dvc['project']}"
        )
    return "\n".join(lines)


def state_json(state: ClusterState) -> str:
    """The record as JSON (for ``tessera cluster status --json``)."""
    return json.dumps(state.model_dump(), indent=1)
