"""A training as one Slurm job: ``sbatch --wait`` of a script whose ``srun`` starts every rank.

Lightning reads Slurm's environment for the ranks. The job is requeued when a node fails
(``--requeue``); the requeued ranks resume the run from its last checkpoint. The launcher
waits for the job within a bound, cancels it when the bound passes or it is interrupted, and
reports the first failing rank's one-line reason, else the last line the job printed.
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.tasks.training.launch_options import SlurmParams
from tessera.tasks.training.relay import Relay

if TYPE_CHECKING:
    from tessera.models.run.run_config import RunConfig

SCRIPT = "slurm-job.sh"
OUTPUT = "slurm-%j.out"
SUBMIT_TIMEOUT_S = 60.0  # a controller that does not answer: sbatch would retry for long


class SlurmError(Exception):
    """The job could not be submitted or did not finish in time; the message is one line."""

    one_line = True


@dataclass
class SlurmJob:
    """A finished job: its id and the exit status ``sbatch --wait`` reported."""

    job_id: str
    returncode: int


def job_script(entry: list[str]) -> str:
    """The batch script: every rank started by ``srun`` with this Python."""
    cmd = shlex.join(["srun", sys.executable, *entry])
    return f"#!/bin/bash\nexec {cmd}\n"


def sbatch_command(launch: Any, config: RunConfig, stage: Path, env: dict[str, str]) -> list[str]:
    """``sbatch --wait --parsable`` with the job's shape (nodes, ranks per node), its name,
    output file, time limit and requeue policy, from the working directory."""
    s: SlurmParams = launch.slurm
    cmd = [
        "sbatch",
        "--wait",
        "--parsable",
        f"--job-name=tessera-{config.experiment}",
        f"--nodes={launch.num_nodes}",
        f"--ntasks-per-node={launch.devices}",
        f"--time={s.time_limit}",
        f"--chdir={Path.cwd()}",
        f"--output={(stage / OUTPUT).resolve()}",
        "--open-mode=append",  # a requeued job's output follows the first run's
        "--export=ALL",
        "--requeue" if s.requeue else "--no-requeue",
    ]
    if s.partition:
        cmd.append(f"--partition={s.partition}")
    return [*cmd, *s.options, str((stage / SCRIPT).resolve())]


def run_slurm_job(
    entry: list[str], launch: Any, config: RunConfig, stage: Path, env: dict[str, str]
) -> SlurmJob:
    """Submit the training, pass its output on while it runs, and wait for it (within
    ``slurm.wait_s``); the job is cancelled if the wait ends otherwise."""
    s: SlurmParams = launch.slurm
    script = stage / SCRIPT
    script.write_text(job_script(entry))
    script.chmod(0o755)
    env = {**env, **s.env, "SLURM_EXPORT_ENV": "ALL"}
    try:
        proc = subprocess.Popen(
            sbatch_command(launch, config, stage, env),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise SlurmError("sbatch: not found; runner.training: slurm needs Slurm's client") from None
    first = _first_line(proc, SUBMIT_TIMEOUT_S)  # --parsable: the job id, once queued
    job_id = first.split(";")[0]
    if not job_id.isdigit():
        proc.kill()
        err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        why = (err or [first or f"no job id within {SUBMIT_TIMEOUT_S:.0f} s"])[-1]
        raise SlurmError(f"sbatch: {why}")
    stop = threading.Event()
    tail = threading.Thread(target=_follow, args=(stage, job_id, stop), daemon=True)
    tail.start()
    try:
        rc = proc.wait(timeout=s.wait_s)
    except subprocess.TimeoutExpired:
        cancel(job_id)
        proc.kill()
        raise SlurmError(
            f"Slurm job {job_id} did not finish within {s.wait_s:.0f} s; cancelled"
        ) from None
    except BaseException:
        cancel(job_id)
        proc.kill()
        raise
    finally:
        stop.set()
        tail.join(timeout=5)
    return SlurmJob(job_id, rc)


def _first_line(proc: subprocess.Popen[str], within_s: float) -> str:
    """The first line ``proc`` prints, or "" when it prints none within ``within_s``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], within_s)
    return proc.stdout.readline().strip() if ready else ""


def cancel(job_id: str) -> None:
    """``scancel`` the job (bounded; a job already gone is no error)."""
    try:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _follow(stage: Path, job_id: str, stop: threading.Event) -> None:
    """Pass the job's output file on to stderr as it grows (:class:`Relay`), until ``stop``."""
    path = stage / OUTPUT.replace("%j", job_id)
    relay, pos = Relay(sys.stderr), 0
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
        except OSError:
            chunk = b""
        pos += len(chunk)
        relay.feed(chunk)
        if not chunk and stop.is_set():
            relay.close()
            return
        if not chunk:
            time.sleep(0.5)


def last_output_line(stage: Path, job_id: str) -> str:
    """The job's last non-empty output line (its reason when no rank left one)."""
    try:
        lines = (stage / OUTPUT.replace("%j", job_id)).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")


def slurm_available() -> bool:
    """Whether Slurm's client is on PATH and answers (``sinfo``), within 10 s."""
    try:
        res = subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10, env=os.environ)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0
