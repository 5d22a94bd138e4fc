"""A Slurm cluster on one host: munge, one controller and two ``slurmd`` nodes (``n1``,
``n2``) on their own ports, with no cgroups and no accounting (Debian's slurm 22.05, as root).

The timing settings make a requeued job restart within seconds rather than minutes, and
``sbatch --wait`` notice a finished job within 2 s (measured on this kind of machine: 167 s
and 32 s with Slurm's defaults). Stopping cancels every job first, then shuts the daemons
down, then kills any job step left behind (``scontrol shutdown`` leaves them running).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tessera.tasks.cluster.processes import (
    ClusterError,
    Daemon,
    listening,
    start,
    stop,
    wait_until,
)

NODES = ("n1", "n2")
MUNGE_SOCKET_DIR = Path("/run/munge")


def slurm_conf(folder: Path, ctld_port: int, node_ports: dict[str, int]) -> str:
    """The configuration of a two-node cluster whose state and logs live in ``folder``."""
    host = socket.gethostname()
    nodes = "\n".join(
        f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs=1 "
        "RealMemory=2000 State=UNKNOWN"
        for n, p in node_ports.items()
    )
    return f"""ClusterName=tessera{ctld_port}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool" / "%n"}
SlurmctldPidFile={folder / "run" / "slurmctld.pid"}
SlurmdPidFile={folder / "run" / "slurmd-%n.pid"}
SlurmctldLogFile={folder / "log" / "slurmctld.log"}
SlurmdLogFile={folder / "log" / "slurmd-%n.log"}
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=5
KillWait=2
SlurmdTimeout=10
ReturnToService=2
{nodes}
PartitionName=debug Nodes={",".join(node_ports)} Default=YES MaxTime=INFINITE State=UP
"""


def munge_running() -> bool:
    """Whether a munge daemon answers (``munge -n | unmunge``)."""
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        res = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return cred.returncode == 0 and res.returncode == 0


def start_munge(folder: Path, within_s: float = 30) -> Daemon | None:
    """Start munged (as the munge user) unless one already answers; None when it did."""
    if munge_running():
        return None
    key = Path("/etc/munge/munge.key")
    if not key.exists():  # Debian's package makes one; a bare install may not have
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=False, timeout=30)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
    log = folder / "munged.log"
    log.touch()
    shutil.chown(log, "munge", "munge")
    daemon = start("munge", ["munged", "-F"], log, user="munge")
    wait_until(munge_running, within_s, daemon, "answering")
    return daemon


def slurm_environment(conf: Path) -> dict[str, str]:
    """What Slurm's clients (sbatch, srun, sinfo) need: the configuration file."""
    return {"SLURM_CONF": str(conf)}


def start_slurm(
    folder: Path, ctld_port: int, node_ports: dict[str, int], within_s: float = 60
) -> list[Daemon]:
    """Write ``slurm.conf`` and start the controller and both nodes; wait until both nodes
    are idle."""
    for sub in ("state", "spool", "run", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, ctld_port, node_ports))
    env = {**os.environ, **slurm_environment(conf)}
    for binary in ("slurmctld", "slurmd", "sinfo"):
        if shutil.which(binary) is None:
            raise ClusterError(f"slurm: {binary} is not installed")
    ctld = start("slurmctld", ["slurmctld", "-D"], folder / "log" / "ctld.out", env=env)
    daemons = [ctld]
    try:
        wait_until(lambda: listening(ctld_port), within_s, ctld, "listening")
        for node in node_ports:
            log = folder / "log" / f"{node}.out"
            daemons.append(start(f"slurmd-{node}", ["slurmd", "-D", "-N", node], log, env=env))
        wait_until(lambda: _idle(env) >= len(node_ports), within_s, ctld, "with idle nodes")
    except BaseException:
        for d in reversed(daemons):
            stop(d)
        raise
    return daemons


def _idle(env: dict[str, str]) -> int:
    res = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env, timeout=10
    )
    return sum(1 for s in res.stdout.split() if s == "idle")


def stop_slurm(conf: Path, daemons: list[Daemon], within_s: float = 30) -> None:
    """Cancel every job of this cluster, stop its daemons, then kill what its jobs left."""
    env = {**os.environ, **slurm_environment(conf)}
    try:
        jobs = subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env, timeout=10
        ).stdout.split()
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True, env=env, timeout=10)
        deadline = time.monotonic() + within_s
        while jobs and time.monotonic() < deadline:
            jobs = subprocess.run(
                ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env, timeout=10
            ).stdout.split()
            time.sleep(0.5)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for d in reversed(daemons):
        stop(d)
    _kill_leftovers(conf)


def _ancestors() -> set[int]:
    """This process and every process above it."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _kill_leftovers(conf: Path) -> None:
    """Kill what this cluster's jobs left running: its ``slurmstepd`` processes, and the
    tasks and ``srun`` clients of its jobs (their environment names this configuration and a
    job). A shell that only exported ``SLURM_CONF`` is never touched, nor this process or its
    parents."""
    mark, spare = f"SLURM_CONF={conf}".encode(), _ancestors()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in spare:
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            name = (proc / "comm").read_text().strip()
        except OSError:
            continue
        in_job = any(v.startswith(b"SLURM_JOB_ID=") for v in env)
        if mark in env and (name == "slurmstepd" or in_job):
            try:
                os.kill(int(proc.name), 9)
            except ProcessLookupError:
                pass
