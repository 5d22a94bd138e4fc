"""Training across nodes with torchrun (two nodes of one process on this host, gloo): the same
weights as two processes on one node; a rendezvous that cannot complete fails within its join
timeout; a killed rank is restarted and the run resumes to the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tessera.models.run.run_folder import staging_dir
from tessera.tasks.cluster.processes import free_port
from tessera.tasks.training.launch import failure_reason, training_command
from tessera.tasks.training.launch_options import LaunchParams
from tests.conftest import child_env
from tests.helpers import (
    TINY_EXPERIMENTS,
    last_weights,
    run_summary,
    stop_process_group,
    training_dir,
)

TESSERA = str(Path(sys.executable).parent / "tessera")
EXP = TINY_EXPERIMENTS["tiny-seg"]
LONG = {**TINY_EXPERIMENTS["tiny-vae"], "trainer": {"max_epochs": 30}}


# the arithmetic of each rank: the same in every run of this module
PINNED = ["--set", "train.trainer.threads=1"]


@pytest.fixture(scope="module")
def project(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    exps = {"two-nodes": LONG, "alone": EXP, "whole": LONG, "killed": LONG}
    return training_dir(tmp_path_factory.mktemp("nodes"), exps, tracking=False)


@pytest.fixture(scope="module")
def whole(project: Path, prefect_api: str) -> Path:
    """The reference run, trained once: 30 epochs of two processes on one node."""
    one = ["train", "--experiment", "whole", "--devices", 2, *PINNED]
    proc = _tessera(one, project, child_env(prefect_api))
    try:
        _done(proc)
    finally:  # stopped here, passed or failed: the module's run, not the first test's
        _STARTED.remove(proc)
        stop_process_group(proc)
    return project


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _stop_what_the_test_started() -> Iterator[None]:
    """Every launcher a test starts is stopped with its ranks, passed or failed."""
    yield
    while _STARTED:
        stop_process_group(_STARTED.pop())


def _tessera(args: list, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [TESSERA, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    _STARTED.append(proc)
    return proc


def _done(proc: subprocess.Popen[str], timeout: float = 600) -> str:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return err


def test_the_rendezvous_has_a_per_run_id_and_a_bounded_join():
    launch = LaunchParams(num_nodes=2, rdzv_endpoint="h:29400", rdzv_timeout_s=42)
    cmd = training_command(Path("run_config.json"), launch, "run-7")
    assert "--rdzv_id=run-7" in cmd and "--rdzv_conf=join_timeout=42,read_timeout=42" in cmd


@pytest.mark.slow
def test_two_nodes_by_torchrun_give_the_weights_of_two_processes_on_one_node(
    whole, project, subprocess_env
):
    endpoint = f"127.0.0.1:{free_port()}"
    node = ["train", "--experiment", "two-nodes", "--num-nodes", 2, "--devices", 1, *PINNED,
            "--set", f"train.rdzv_endpoint={endpoint}"]  # fmt: skip
    nodes = [_tessera(node, project, subprocess_env) for _ in range(2)]
    for proc in nodes:
        _done(proc)
    a, b = run_summary(project, "whole"), run_summary(project, "two-nodes")
    assert a["world_size"] == b["world_size"] == 2 and a["steps"] == b["steps"]
    wa, wb = last_weights(project, "whole"), last_weights(project, "two-nodes")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)


def test_a_node_whose_peer_never_comes_fails_within_the_join_timeout(project, subprocess_env):
    args = ["train", "--experiment", "alone", "--num-nodes", 2, "--devices", 1,
            "--set", f"train.rdzv_endpoint=127.0.0.1:{free_port()}",
            "--set", "runner.rdzv_timeout_s=10"]  # fmt: skip
    started = time.monotonic()
    proc = _tessera(args, project, subprocess_env)
    _, err = proc.communicate(timeout=180)
    took = time.monotonic() - started
    lines = [ln for ln in err.splitlines() if ln.startswith("tessera:")]
    assert proc.returncode == 1 and len(lines) == 1, err[-3000:]
    assert took < 10 + 40, took  # the join timeout, plus the launcher's start-up
    assert not (project / "models" / "alone").exists()


def test_an_endpoint_that_does_not_resolve_fails_at_once(project, subprocess_env):
    args = ["train", "--experiment", "alone", "--num-nodes", 2,
            "--set", "train.rdzv_endpoint=no-such-host.invalid:29400"]  # fmt: skip
    proc = _tessera(args, project, subprocess_env)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, err
    assert "no-such-host.invalid does not resolve" in lines[0]


def test_a_failed_launch_reports_its_last_attempt(tmp_path):
    (tmp_path / "error.txt").write_text("first attempt: peer lost\n")
    assert failure_reason(tmp_path) == "first attempt: peer lost"
    (tmp_path / "error.1.txt").write_text("second attempt: out of memory\n")
    (tmp_path / "error.10.txt").write_text("eleventh attempt: disk full\n")
    assert failure_reason(tmp_path) == "eleventh attempt: disk full"


def _rank_process(rank: int, stage: Path) -> int | None:
    """The PID of this run's training process of rank ``rank`` (torchrun sets RANK in its
    environment, the launcher the run's staging folder): never another test's."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = f"TESSERA_ERROR_FILE={stage}/".encode()
        if (
            b"tessera.models.run.fit" in cmd
            and f"RANK={rank}".encode() in env
            and any(v.startswith(ours) for v in env)
        ):
            return int(proc.name)
    return None


@pytest.mark.slow
@pytest.mark.long("a 30-epoch training of two ranks, one of them killed and restarted")
def test_a_killed_rank_is_restarted_and_the_run_resumes_to_the_same_result(
    whole, project, subprocess_env
):
    two = ["--devices", 2, "--set", "runner.max_restarts=1", *PINNED]
    last = staging_dir(project / "models" / "killed") / "checkpoints" / "last.ckpt"
    proc = _tessera(["train", "--experiment", "killed", *two], project, subprocess_env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not last.exists():
        time.sleep(0.05)
    rank = _rank_process(1, last.parents[1].resolve())
    assert proc.poll() is None and rank is not None, "no rank to kill"
    os.kill(rank, signal.SIGKILL)
    _done(proc)
    a, b = run_summary(project, "whole"), run_summary(project, "killed")
    run = json.loads((project / "models" / "killed" / "train_run.json").read_text())
    assert run["restarts"] == 1
    assert a["epochs"] == b["epochs"] == 30 and a["steps"] == b["steps"]
    assert b["best_val_loss"] == pytest.approx(a["best_val_loss"], rel=1e-6, abs=1e-9)
    for k, v in a["test_metrics"].items():
        assert b["test_metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
