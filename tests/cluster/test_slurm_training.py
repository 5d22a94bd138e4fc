"""Training as Slurm jobs on the cluster's two nodes: world size 2 across ``n1`` and ``n2`` with
the weights of two processes on one node; a node that fails mid-training requeues the job,
which resumes from its last checkpoint and ends with the uninterrupted run's metrics; a
failing job is reported in one line with its own reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tessera.models.run.run_folder import staging_dir
from tessera.tasks.cluster.cluster import _runner
from tests.cluster.conftest import client_env
from tests.cluster.projects import TESSERA, ok, one_line, scene_project, tessera
from tests.helpers import REPO, TINY_EXPERIMENTS, last_weights, run_summary

pytestmark = pytest.mark.cluster
LONG = {**TINY_EXPERIMENTS["tiny-vae"], "trainer": {"max_epochs": 30}}


@pytest.fixture(scope="module")
def project(cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    exps = {"local": TINY_EXPERIMENTS["tiny-seg"], "slurm": TINY_EXPERIMENTS["tiny-seg"],
            "whole": LONG, "requeued": LONG, "broken": TINY_EXPERIMENTS["tiny-seg"]}  # fmt: skip
    root = scene_project(tmp_path_factory.mktemp("slurm"), exps)
    env = client_env(cluster, profile=False)
    ok(tessera(["ingest"], root, env))
    ok(tessera(["tile"], root, env))
    return root


def test_a_job_on_two_nodes_trains_the_weights_of_two_processes_on_one_node(
    cluster, project, cluster_env
):
    pinned = ["--set", "train.trainer.threads=1"]
    ok(tessera(["train", "--experiment", "local", "--devices", 2, *pinned], project,
               client_env(cluster, profile=False)))  # fmt: skip
    out = ok(tessera(["train", "--experiment", "slurm", "--num-nodes", 2, "--devices", 1,
                      *pinned], project, cluster_env))  # fmt: skip
    s = run_summary(project, "slurm")
    assert s["world_size"] == 2 and "Slurm job" in out
    run = json.loads((project / "models" / "slurm" / "train_run.json").read_text())
    assert run["mlflow_run_id"]  # logged to the cluster's MLflow server
    a, b = last_weights(project, "local"), last_weights(project, "slurm")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _job_node(env: dict[str, str], name: str) -> tuple[str, str] | None:
    """(job id, node list) of the running job called ``name``."""
    res = subprocess.run(["squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%i %N"],
                         capture_output=True, text=True, env=env, timeout=10)  # fmt: skip
    parts = res.stdout.split()
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _node_state(env: dict[str, str], node: str) -> str:
    """The node's state as ``sinfo`` names it (``idle``, ``down*``, ``allocated``...)."""
    res = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True,
                         text=True, env=env, timeout=10)  # fmt: skip
    return res.stdout.strip()


@pytest.mark.slow
def test_a_node_failure_requeues_the_job_which_resumes_to_the_same_result(project, cluster_env):
    ok(tessera(["train", "--experiment", "whole"], project, cluster_env))
    last = staging_dir(project / "models" / "requeued") / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [TESSERA, "train", "--experiment", "requeued"], cwd=project, env=cluster_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not last.exists():
        time.sleep(0.1)
    job = _job_node(cluster_env, "tessera-requeued")
    assert proc.poll() is None and job is not None, "no running job to fail"
    job_id, node = job
    scontrol = ["scontrol", "update", f"nodename={node}"]
    subprocess.run([*scontrol, "state=down", "reason=test"], env=cluster_env, check=True)
    back = time.monotonic() + 60  # a node still completing its killed job refuses "resume"
    while subprocess.run([*scontrol, "state=resume"], env=cluster_env).returncode != 0:
        if not _node_state(cluster_env, node).startswith(("down", "drain")):
            break  # ReturnToService=2: its slurmd answered, and Slurm took it back itself
        assert time.monotonic() < back, f"{node} did not come back"
        time.sleep(1)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    run = json.loads((project / "models" / "requeued" / "train_run.json").read_text())
    assert run["restarts"] == 1 and f"Slurm job {job_id}" in out and "restarted 1x" in out
    a, b = run_summary(project, "whole"), run_summary(project, "requeued")
    assert a["epochs"] == b["epochs"] == 30 and a["steps"] == b["steps"]
    assert b["best_val_loss"] == pytest.approx(a["best_val_loss"], rel=1e-6, abs=1e-9)
    for k, v in a["test_metrics"].items():
        assert b["test_metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_a_failing_job_is_one_line_with_its_reason(project, cluster_env):
    res = tessera(["train", "--experiment", "broken", "--set", "train.store=no-store"],
                  project, cluster_env)  # fmt: skip
    line = one_line(res)
    assert "Slurm job" in line and "no-store" in line
    assert not (project / "models" / "broken").exists()


def test_a_node_running_another_tessera_is_refused_naming_it(cluster, project, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(
        REPO / "tessera", other / "tessera", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(other / "tessera" / "models" / "fit.py", "a") as fh:
        fh.write("# an older release on the nodes\n")
    runner = _runner(Path(cluster.folder), "workers", None)
    runner["slurm"]["env"]["PYTHONPATH"] = str(other)  # what the job's Python imports
    profile = tmp_path / "stale-nodes.yaml"
    profile.write_text(yaml.safe_dump({"env": cluster.env, "runner": runner}))
    env = {**client_env(cluster), "TESSERA_PROFILE": str(profile)}
    line = one_line(tessera(["train", "--experiment", "broken"], project, env))
    assert "Slurm job" in line and "node n" in line and "install the same Tessera" in line
    assert not (project / "models" / "broken").exists()
