"""Launching a training run: its staging folder and run config, the processes (one, torchrun
on this node or across nodes, or a Slurm job), the wait, and the summary of the promoted run.

Nothing of the previous run is touched until the new one is complete
(:mod:`tessera.models.run.run_folder`): a refused, failed or killed training leaves the last
summary and checkpoints as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tessera.models.run.cpu import cpu_kernel_environment
from tessera.models.run.run_config import (
    LAUNCH_ENV,
    RUN_CONFIG_FILE,
    RUN_FILE,
    SUMMARY_FILE,
    RunConfig,
)
from tessera.models.run.run_folder import (
    attempt_files,
    discard_unresumable,
    is_stage,
    launch_of,
    prepare_stage,
    staging_dir,
)
from tessera.models.version import FINGERPRINT_ENV, identity
from tessera.tasks.base.files import atomic_write_json
from tessera.tasks.base.outputs import check_output, json_keys
from tessera.tasks.training.launch_options import LaunchParams
from tessera.tasks.training.relay import relay_without_traceback
from tessera.tasks.training.slurm import last_output_line, run_slurm_job
from tessera.tasks.training.tracking import (
    check_tracking_server,
    create_tracking_store,
    rank_http_environment,
)

ERROR_FILE = "error.txt"  # in the staging folder: the first failing rank's one-line reason
PEER_WAIT_S = 120.0  # how long a node that is not rank zero waits for the promoted run


class TrainingError(Exception):
    """A training process failed; the message is one line."""

    one_line = True


def is_training_run(path: Path) -> bool:
    """A folder written by ``tessera train``: its ``run_config.json``, or the summary that git
    keeps of one (a fresh clone, before ``dvc pull``)."""
    return (path / RUN_CONFIG_FILE).is_file() or "experiment" in json_keys(path / SUMMARY_FILE)


def write_run_config(config: RunConfig, launch: LaunchParams) -> Path:
    """Prepare the run's staging folder, write ``run_config.json`` into it and return its path.

    A folder that holds anything but a training run's files, or a staging folder Tessera did
    not make, is refused before anything is written. The nodes of one multi-node launch share
    the staging folder the first of them made.
    """
    out = Path(config.out_dir)
    stage = staging_dir(out)
    check_output(out, is_training_run, "Tessera training run", siblings={stage: is_stage})
    peers = launch.launcher == "local" and launch.num_nodes > 1
    try:
        prepare_stage(
            out, launch.resume, launch_id(launch, out), launch.rdzv_timeout_s if peers else 0
        )
    except FileNotFoundError as exc:
        raise TrainingError(str(exc)) from None
    path = stage / RUN_CONFIG_FILE
    atomic_write_json(path, config.model_dump(mode="json"))
    return path


def launch_id(launch: LaunchParams, out: Path) -> str:
    """The id every process of this run shares (torchrun's rendezvous id): ``TESSERA_RUN_ID``
    or ``SLURM_JOB_ID`` when set, else one made from the run's folder for several nodes
    started by hand (they must agree on it), else a new one."""
    given = os.environ.get("TESSERA_RUN_ID") or os.environ.get("SLURM_JOB_ID")
    if given:
        return given
    if launch.launcher == "local" and launch.num_nodes > 1:
        digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()
        return f"tessera-{digest[:16]}"
    return uuid.uuid4().hex[:16]


def _entry(config_path: Path, resume: bool) -> list[str]:
    return ["-m", "tessera.models.run.fit", "--config", str(config_path)] + (
        ["--resume"] if resume else []
    )


def check_endpoint(endpoint: str, within_s: float = 10.0) -> None:
    """Fail in one line unless ``host:port`` resolves (a name that does not would hang)."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise TrainingError(f"train.rdzv_endpoint {endpoint!r}: expected host:port")
    done: list[Any] = []

    def resolve() -> None:
        try:
            done.append(socket.getaddrinfo(host, int(port)))
        except OSError as exc:
            done.append(exc)

    t = threading.Thread(target=resolve, daemon=True)
    t.start()
    t.join(within_s)
    if not done or isinstance(done[0], OSError):
        why = done[0] if done else f"no answer within {within_s:.0f} s"
        raise TrainingError(f"train.rdzv_endpoint {endpoint}: {host} does not resolve ({why})")


def training_command(config_path: Path, launch: LaunchParams, run_id: str) -> list[str]:
    """``python -m tessera.models.run.fit`` for one process, or under torchrun for several (or
    for restarts). One node runs torchrun ``--standalone``; several nodes meet at the c10d
    rendezvous ``rdzv_endpoint`` under ``run_id``, each waiting ``rdzv_timeout_s`` at most."""
    entry = _entry(config_path, launch.resume)
    if launch.devices * launch.num_nodes == 1 and launch.max_restarts == 0:
        return [sys.executable, *entry]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={launch.devices}",
        f"--max_restarts={launch.max_restarts}",
    ]
    if launch.num_nodes == 1:
        cmd.append("--standalone")
    else:
        if not launch.rdzv_endpoint:
            raise TrainingError("num_nodes > 1 needs train.rdzv_endpoint (host:port)")
        t = launch.rdzv_timeout_s
        cmd += [
            f"--nnodes={launch.num_nodes}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={launch.rdzv_endpoint}",
            f"--rdzv_id={run_id}",
            f"--rdzv_conf=join_timeout={t},read_timeout={t}",
        ]
    return cmd + entry


def _environment(
    config: RunConfig, stage: Path, run_id: str, launch: LaunchParams
) -> dict[str, str]:
    return {
        **os.environ,
        # a tracking server that stops answering fails the run within the bound
        **rank_http_environment(launch.tracking_timeout_s),
        # pinned before torch starts, whatever the launcher
        **cpu_kernel_environment(config.trainer.cpu_isa, config.trainer.threads),
        "TESSERA_ERROR_FILE": str((stage / ERROR_FILE).resolve()),
        LAUNCH_ENV: run_id,
        FINGERPRINT_ENV: identity(),  # every rank checks it runs the same code
        # a restart's ranks meet in a store of their own: in the store torchrun shares across
        # restarts, gloo read the killed attempt's addresses and refused (torch 2.13)
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
    }


def _run_here(cmd: list[str], env: dict[str, str]) -> int:
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    relay_without_traceback(proc.stderr.fileno(), sys.stderr)
    return proc.wait()


def _promoted(out: Path, run_id: str, wait_s: float) -> dict[str, Any] | None:
    """This run's record once rank zero has moved it over ``out`` (waiting up to ``wait_s``:
    on a node other than rank zero's, the processes may end first)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            run = json.loads((out / RUN_FILE).read_text())
        except (OSError, ValueError):
            run = {}
        if run.get("launch") == run_id and (out / SUMMARY_FILE).is_file():
            return dict(run)
        if time.monotonic() >= deadline:
            return None
        time.sleep(1)


def launch_training(config_path: Path, launch: LaunchParams) -> dict[str, Any]:
    """Run the training in child processes (never in this one) or as a Slurm job, wait, and
    read the summary of the run rank zero promoted.

    The MLflow store is created (or its server reached) first, so that no rank races to
    create it or waits on a server that is down; what the processes print is passed on, less
    torchrun's own traceback (the failing rank's one-line reason is reported instead).
    """
    config = RunConfig.model_validate_json(config_path.read_text())
    if config.tracking_uri:
        check_tracking_server(config.tracking_uri, launch.tracking_timeout_s)
        create_tracking_store(config.tracking_uri)
    out = Path(config.out_dir)
    stage = config_path.parent
    for old in attempt_files(stage / ERROR_FILE):
        old.unlink(missing_ok=True)
    run_id = launch_of(stage)
    env = _environment(config, stage, run_id, launch)
    if launch.launcher == "slurm":
        job = run_slurm_job(_entry(config_path, launch.resume), launch, config, stage, env)
        rc, where = job.returncode, f"Slurm job {job.job_id}"
    else:
        if launch.num_nodes > 1 and launch.rdzv_endpoint:
            check_endpoint(launch.rdzv_endpoint)
        rc, where = _run_here(training_command(config_path, launch, run_id), env), "training"
    if rc != 0:
        reason = failure_reason(stage)
        if not reason and launch.launcher == "slurm":
            reason = last_output_line(stage, job.job_id)
        discard_unresumable(stage)
        raise TrainingError(
            f"{where}: {reason}" if reason else f"{config_path}: {where} exited with status {rc}"
        )
    run = _promoted(out, run_id, PEER_WAIT_S if launch.num_nodes > 1 else 5.0)
    if run is None:
        raise TrainingError(f"{out / SUMMARY_FILE}: {where} finished without a summary")
    summary: dict[str, Any] = json.loads((out / SUMMARY_FILE).read_text())
    return summary | run | ({"slurm_job": job.job_id} if launch.launcher == "slurm" else {})


def failure_reason(stage: Path) -> str:
    """The last attempt's reason (each of torchrun's restarts writes its own file)."""
    for path in attempt_files(stage / ERROR_FILE):
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return ""
