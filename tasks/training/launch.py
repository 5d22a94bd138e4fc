"""Launching a training run: the resolved run config, the launcher command, the summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from tessera.models.config import RUN_FILE, SUMMARY_FILE, RunConfig
from tessera.models.cpu import cpu_kernel_environment
from tessera.tasks.store.errors import debugging
from tessera.tasks.store.files import atomic_write_json
from tessera.tasks.store.outputs import check_output, json_keys

RUN_CONFIG_FILE = "run_config.json"


def is_training_run(path: Path) -> bool:
    """A folder written by ``tessera train``: its ``run_config.json``, or the summary that git
    keeps of one (a fresh clone, before ``dvc pull``)."""
    return (path / RUN_CONFIG_FILE).is_file() or "experiment" in json_keys(path / SUMMARY_FILE)


class TrainingError(Exception):
    """A training process failed; the message is one line."""

    one_line = True


def create_tracking_store(uri: str) -> None:
    """Create an embedded (sqlite) MLflow store once, before several processes open it.

    Two ranks creating it at once fail on MLflow's schema migration (``alembic_version``).
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists() and path.stat().st_size > 0:
        return
    code = (
        "import sys; from mlflow import MlflowClient; "
        "MlflowClient(sys.argv[1]).search_experiments()"
    )
    # in a child process, so that this one holds no connection to the new store
    res = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["failed"])[-1]
        raise TrainingError(f"{path}: cannot create the MLflow store: {why}")


_TRACEBACK = b"Traceback (most recent call last):"
# torchrun's own chatter: its log lines, and the OMP_NUM_THREADS banner
_LAUNCHER_LINE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+ \d+ torch/distributed/.*|\*{20,}|Setting OMP_NUM_THREADS .*)\r?$"
)


def _without_launcher_lines(text: bytes) -> bytes:
    lines = text.split(b"\n")
    return b"\n".join(ln for ln in lines if not _LAUNCHER_LINE.match(ln.strip(b" ")))


def relay_without_traceback(fd: int, sink: TextIO) -> None:
    """Copy bytes from ``fd`` to ``sink`` as they come (progress bars included) and stop
    copying at the first Python traceback: only torchrun prints one, since each rank reports
    its failure in one line (to the launcher). torchrun's log lines are left out too.
    ``TESSERA_DEBUG=1`` copies everything."""
    keep_all = debugging()
    pending, muted = b"", False
    while chunk := os.read(fd, 1 << 16):
        if muted:
            continue
        pending += chunk
        cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
        head, pending = pending[:cut], pending[cut:]
        at = head.find(_TRACEBACK)
        if at >= 0 and not keep_all:
            head, muted = head[:at], True
        if not keep_all:
            head = _without_launcher_lines(head)
        sink.write(head.decode(errors="replace"))
        sink.flush()
    if not muted and pending:
        sink.write(pending.decode(errors="replace"))
        sink.flush()


def write_run_config(config: RunConfig) -> Path:
    """Write ``run_config.json`` into the experiment's folder (atomically) and return its path.

    A folder that holds anything but a training run's files is refused before anything is
    written (:func:`tessera.tasks.store.outputs.check_output` with :func:`is_training_run`).
    """
    out = Path(config.out_dir)
    check_output(out, is_training_run, "Tessera training run")
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_CONFIG_FILE
    atomic_write_json(path, config.model_dump(mode="json"))
    return path


def training_command(
    config_path: Path,
    devices: int,
    num_nodes: int,
    resume: bool = False,
    rdzv_endpoint: str | None = None,
) -> list[str]:
    """``python -m tessera.models.train`` for one process, or under torchrun for several.

    One node runs torchrun ``--standalone``; several nodes meet at ``rdzv_endpoint`` (c10d),
    and the same command is started on every node.
    """
    entry = ["-m", "tessera.models.train", "--config", str(config_path)] + (
        ["--resume"] if resume else []
    )
    if devices * num_nodes == 1:
        return [sys.executable, *entry]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={devices}"]
    if num_nodes == 1:
        cmd.append("--standalone")
    else:
        if not rdzv_endpoint:
            raise TrainingError("num_nodes > 1 needs train.rdzv_endpoint (host:port)")
        cmd += [f"--nnodes={num_nodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
    return cmd + entry


def launch_training(
    config_path: Path,
    devices: int = 1,
    num_nodes: int = 1,
    resume: bool = False,
    rdzv_endpoint: str | None = None,
) -> dict[str, Any]:
    """Run training in child processes (never in this one), wait, and read the summary back.

    The MLflow store is created here first, so that the ranks never race to create it; what
    the children print is passed on, less torchrun's own traceback when a rank fails (the
    rank's one-line reason is reported instead).
    """
    cmd = training_command(config_path, devices, num_nodes, resume, rdzv_endpoint)
    config = RunConfig.model_validate_json(config_path.read_text())
    if config.tracking_uri:
        create_tracking_store(config.tracking_uri)
    summary_path = config_path.parent / SUMMARY_FILE
    for stale in (summary_path, config_path.parent / RUN_FILE):
        stale.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        error_file = Path(tmp) / "error.txt"  # the child's one-line reason, if it fails
        env = {
            **os.environ,
            **cpu_kernel_environment(config.trainer.cpu_isa),  # pinned before torch starts
            "TESSERA_ERROR_FILE": str(error_file),
        }
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        relay_without_traceback(proc.stderr.fileno(), sys.stderr)
        rc = proc.wait()
        reason = error_file.read_text().strip() if error_file.exists() else ""
    if rc != 0:
        raise TrainingError(reason or f"{config_path}: training exited with status {rc}")
    if not summary_path.exists():
        raise TrainingError(f"{summary_path}: training finished without a summary")
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    run_path = config_path.parent / RUN_FILE
    return summary | (json.loads(run_path.read_text()) if run_path.exists() else {})
