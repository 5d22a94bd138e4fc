"""``tessera run`` end to end in a temporary git + DVC repo, agreeing with ``dvc repro``; and a
deployment of the pipeline run by a real ``prefect server``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import (
    REPO,
    get_json,
    git_dvc_repo,
    landsat_like,
    post_json,
    prefect_server,
    run_by_worker,
    sh,
    sh_all,
    stop_process_group,
    wait_for,
    write_nifti,
)

pytestmark = pytest.mark.slow
STAGES = ["ingest", "tile", "train@l8-vae", "evaluate@l8-vae", "register"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Path:
    """A committed git + DVC project: the real dvc.yaml and code, tiny data, one experiment."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    repo = tmp_path_factory.mktemp("project")
    git_dvc_repo(repo, env)
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    for pkg in ("flows", "tasks", "models"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    landsat_like(repo / "data" / "l8", h=96, w=96)
    rng = np.random.default_rng(0)
    volume = rng.random((12, 14, 10)).astype(np.float32)
    write_nifti(repo / "data" / "vol.nii.gz", volume, np.eye(4))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["sources"] = [
        {
            "name": "l8",
            "kind": "geotiff",
            "glob": "data/l8/l8_B*.tif",
            "band_regex": r"l8_(?P<band>B\d+)\.tif$",
            "nodata": 0,
        },
        {"name": "vol", "kind": "nifti", "paths": ["data/vol.nii.gz"]},
    ]
    params["tile"].update(size=8, stride=8)
    params["tile"]["split"]["block_size"] = 16
    params["train"]["trainer"].update(max_epochs=1)
    params["evaluate"]["tsne"] = False
    params["predict"]["experiments"] = []  # no segmentation experiment here
    params["experiments"] = {
        "l8-vae": {
            "dataset": {"sources": ["l8"]},
            "model": {"type": "vae", "latent_dim": 2, "widths": [4, 8], "lr": 0.001},
            "loader": {"batch_size": 8},
        }
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / ".gitignore").write_text("mlflow.db\nmlartifacts/\n.prefect/\n")
    remote = tmp_path_factory.mktemp("remote")
    sh_all(
        [
            ["dvc", "remote", "add", "-d", "local", str(remote)],
            ["dvc", "add", "-q", "data"],
            ["git", "add", "-A"],
            ["git", "commit", "-qm", "p"],
        ],
        repo,
        env,
    )
    return repo


def _ran(out: str) -> list[str]:
    line = next(x for x in out.splitlines() if x.startswith("Ran: "))
    return [] if "nothing" in line else line[5:].split(", ")


@pytest.mark.long("the whole pipeline twice, DVC agreeing, and a rerun killed mid-registration")
def test_tessera_run_does_every_stage_once_and_agrees_with_dvc(project, cli, subprocess_env):
    rc, out, err = cli("run", cwd=project)
    assert rc == 0, err
    assert _ran(out) == STAGES  # dependency order, every stage as a subflow
    record = json.loads((project / "outputs/registry/l8-vae.json").read_text())
    assert record["alias"] == "champion" and record["version"] == "1"
    assert "| l8-vae | silhouette" in out
    remote = sh(["dvc", "remote", "list"], project, subprocess_env).stdout.split()
    assert "Pushed: " in out and f"files to local ({remote[1]})" in out, out
    # the outputs went to the default remote: a fresh checkout could pull them
    pushed = sh(["dvc", "status", "--cloud", "--json"], project, subprocess_env)
    assert pushed.returncode == 0 and json.loads(pushed.stdout or "{}") == {}, pushed.stdout
    # DVC agrees: nothing is out of date, and dvc repro has nothing to do
    status = sh(["dvc", "status", "--json"], project, subprocess_env)
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}, status.stdout
    repro = sh(["dvc", "repro"], project, subprocess_env)
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout
    sh_all([["git", "add", "-A"], ["git", "commit", "-qm", "run 1"]], project, subprocess_env)
    tracked = sh(["git", "ls-files"], project, subprocess_env).stdout
    assert "outputs/tiles/" not in tracked and ".ckpt" not in tracked  # DVC's, git-ignored

    # unchanged data and params: no work, nothing registered
    start = time.monotonic()
    rc, out, err = cli("run", cwd=project)
    assert rc == 0, err
    assert _ran(out) == [] and time.monotonic() - start < 60
    assert json.loads((project / "outputs/registry/l8-vae.json").read_text())["version"] == "1"

    # one experiment's hyper-parameter: only its stages and register rerun. Killed while it
    # registers the new model, the rerun finishes the job without registering it twice.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["experiments"]["l8-vae"]["model"]["lr"] = 0.003
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    logged = len(list((project / "mlartifacts").rglob("MLmodel")))
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tessera"), "run"], cwd=project, env=subprocess_env,
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((project / "mlartifacts").rglob("MLmodel"))) > logged:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    rc, out, err = cli("run", cwd=project)
    assert rc == 0, err
    assert _ran(out) == ["register"]  # train and evaluate were committed before the kill
    assert json.loads((project / "outputs/registry/l8-vae.json").read_text())["version"] == "2"
    from mlflow import MlflowClient

    versions = MlflowClient(f"sqlite:///{project / 'mlflow.db'}").search_model_versions(
        "name = 'tessera-l8-vae'"
    )
    assert sorted(int(v.version) for v in versions) == [1, 2]  # none registered twice
    status = sh(["dvc", "status", "--json"], project, subprocess_env)
    assert json.loads(status.stdout or "{}") == {}, status.stdout
    diff = sh(["dvc", "params", "diff"], project, subprocess_env)
    assert "experiments.l8-vae.model.lr" in diff.stdout and "0.003" in diff.stdout, diff.stdout
    metrics = sh(["dvc", "metrics", "diff", "--all"], project, subprocess_env)
    assert metrics.returncode == 0 and "silhouette" in metrics.stdout, metrics.stderr
    rc, out, err = cli("summary", cwd=project)  # what make demo prints at the end
    assert rc == 0, err
    assert "tessera-l8-vae v2" in out and "l8_clusters.tif" in out and "mlflow ui" in out

    # DVC empties a stage's outputs before it reruns it: the emptied folders are still ours
    repro = sh(["dvc", "repro", "-f", "-s", "evaluate@l8-vae"], project, subprocess_env)
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    assert (project / "outputs/eval/l8-vae/report.md").is_file()


def test_a_failing_stage_fails_the_run_in_one_line(project, cli):
    params = yaml.safe_load((project / "params.yaml").read_text())
    broken = json.loads(json.dumps(params))
    broken["experiments"]["l8-vae"]["dataset"]["sources"] = ["nope"]
    (project / "params.yaml").write_text(yaml.safe_dump(broken))
    try:
        rc, _, err = cli("run", cwd=project)
    finally:
        (project / "params.yaml").write_text(yaml.safe_dump(params))
    errors = [line for line in err.splitlines() if line.startswith("tessera:")]
    assert rc == 1 and len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("tessera: train@l8-vae: ")
    assert "no tiles of source 'nope'" in errors[0]


def test_deployments_are_run_by_a_real_worker_on_a_real_prefect_server(
    project, tmp_path, subprocess_env
):
    """prefect.yaml deploys against a real server; a process worker runs the nightly
    deployment, and a served deployment's run completes too."""
    bin_dir = Path(sys.executable).parent
    with prefect_server(tmp_path / "home", subprocess_env) as env:
        api = env["PREFECT_API_URL"]
        shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
        res = sh(
            [str(bin_dir / "prefect"), "work-pool", "create", "tessera-process",
             "--type", "process"],
            project, env,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        # prefect.yaml's pull step runs flows in {{ $PWD }}: the folder deployed from
        deploy_env = {**env, "PWD": str(project)}
        res = sh([str(bin_dir / "prefect"), "--no-prompt", "deploy", "--all"], project,
                 deploy_env, 120)  # fmt: skip
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        found = wait_for(lambda: post_json(f"{api}/deployments/filter", {}), 60, "the deployments")
        names = {d["name"] for d in found}
        assert {"tessera-nightly", "tessera-retrain-weekly", "tessera-predict-incoming"} <= names
        # a real process worker picks up the nightly pipeline and runs it in this checkout
        run_by_worker(env, project, "tessera-pipeline/tessera-nightly", {}, "tessera-process")
        # serve the pipeline from this project (no work pool) and trigger a run
        served = subprocess.Popen(
            [str(bin_dir / "tessera"), "serve", "--cron", "0 2 * * *", "--name", "t"],
            cwd=project, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            dep = wait_for(
                lambda: get_json(f"{api}/deployments/name/tessera-pipeline/t"), 90,
                "the served deployment",
            )  # fmt: skip
            run = wait_for(
                lambda: post_json(f"{api}/deployments/{dep['id']}/create_flow_run", {}),
                60, "a flow run",
            )  # fmt: skip

            def finished() -> dict | None:
                state = get_json(f"{api}/flow_runs/{run['id']}")["state"]
                return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

            state = wait_for(finished, 240, "the deployment's flow run")
            assert state["type"] == "COMPLETED", state.get("message")
        finally:
            stop_process_group(served)
