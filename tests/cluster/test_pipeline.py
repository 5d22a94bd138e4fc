"""The scheduled pipeline deployment on the cluster: deployed to its Prefect server (on
PostgreSQL) and run once by a real process worker whose profile puts tiling on Dask and
training on Slurm, tracking on the MLflow server, outputs pushed to S3; a fresh clone
configured with that remote restores every output with ``dvc pull``."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.cluster.projects import digests
from tests.helpers import REPO, git_dvc_repo, landsat_like, run_by_worker, sh, sh_all

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
OUTPUTS = (
    "outputs/catalog.parquet",
    "outputs/tiles",
    "outputs/models/l8-vae/checkpoints",
    "outputs/models/l8-vae/run_config.json",  # a checkpoint alone cannot be predicted with
)


@pytest.fixture
def project(cluster_env: dict[str, str], tmp_path: Path) -> Path:
    """A committed git + DVC project (the real dvc.yaml, prefect.yaml and code, tiny data,
    one experiment) whose default remote is a fresh prefix of the cluster's bucket."""
    repo = git_dvc_repo(tmp_path / "project", cluster_env)
    for f in ("dvc.yaml", "prefect.yaml"):
        shutil.copy(REPO / f, repo / f)
    for pkg in ("flows", "tasks", "models"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    landsat_like(repo / "data" / "l8", h=96, w=96)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["sources"] = [
        {"name": "l8", "kind": "geotiff", "glob": "data/l8/l8_B*.tif",
         "band_regex": r"l8_(?P<band>B\d+)\.tif$", "nodata": 0},
    ]  # fmt: skip
    params["tile"].update(size=8, stride=8)
    params["tile"]["split"]["block_size"] = 16
    params["evaluate"]["tsne"] = False
    params["predict"]["experiments"] = []
    params["experiments"] = {
        "l8-vae": {
            "dataset": {"sources": ["l8"]},
            "model": {"type": "vae", "latent_dim": 2, "widths": [4, 8], "lr": 0.001},
            "trainer": {"max_epochs": 1},
            "loader": {"batch_size": 8},
        }
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / ".gitignore").write_text("mlflow.db\nmlartifacts/\n.prefect/\n")
    url = f"s3://tessera/dvc-{uuid.uuid4().hex}"
    sh_all(
        [["dvc", "remote", "add", "-d", "s3", url],
         ["dvc", "remote", "modify", "s3", "endpointurl", cluster_env["AWS_ENDPOINT_URL"]],
         ["dvc", "add", "-q", "data"], ["git", "add", "-A"], ["git", "commit", "-qm", "p"]],
        repo, cluster_env,
    )  # fmt: skip
    return repo


def _slurm_jobs_done(cluster) -> int:
    log = Path(cluster.folder) / "slurm" / "log" / "slurmctld.log"
    return log.read_text().count("_job_complete: JobId=") if log.exists() else 0


@pytest.mark.long("a real deployment run by a process worker on the cluster, then a clone pulls")
def test_the_nightly_deployment_runs_on_the_cluster_and_a_clone_pulls_it(
    cluster, project, cluster_env
):
    jobs = _slurm_jobs_done(cluster)
    bin_dir = str(Path(sys.executable).parent)
    env = {**cluster_env, "PWD": str(project)}  # prefect.yaml runs flows in {{ $PWD }}
    pool = sh([f"{bin_dir}/prefect", "work-pool", "create", "tessera-process", "--type",
               "process", "--overwrite"], project, env)  # fmt: skip
    assert pool.returncode == 0, pool.stdout + pool.stderr
    res = sh([f"{bin_dir}/prefect", "--no-prompt", "deploy", "--name", "tessera-nightly"],
             project, env, 120)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    state = run_by_worker(env, project, "tessera-pipeline/tessera-nightly", {}, "tessera-process")
    assert state["type"] == "COMPLETED"
    assert _slurm_jobs_done(cluster) > jobs  # the training was a Slurm job
    record = yaml.safe_load((project / "outputs/registry/l8-vae.json").read_text())
    assert record["alias"] == "champion"
    from mlflow import MlflowClient

    server = MlflowClient(cluster_env["MLFLOW_TRACKING_URI"])  # tracked on the cluster's
    assert server.get_registered_model(record["name"]).aliases == {"champion": "1"}
    status = sh(["dvc", "status", "--cloud", "--json"], project, cluster_env)
    assert status.returncode == 0 and status.stdout.strip() in ("", "{}"), status.stdout
    sh_all([["git", "add", "-A"], ["git", "commit", "-qm", "run"]], project, cluster_env)

    clone = project.parent / "clone"
    sh_all(
        [
            ["git", "clone", "-q", str(project), str(clone)],
        ],
        project.parent,
        cluster_env,
    )
    sh_all([["dvc", "pull", "-q"]], clone, cluster_env)
    status = sh(["dvc", "status", "--json"], clone, cluster_env)  # every stage's outputs back
    assert status.returncode == 0 and status.stdout.strip() in ("", "{}"), status.stdout
    for out in OUTPUTS:
        theirs, ours = project / out, clone / out
        if theirs.is_dir():
            assert digests(ours) == digests(theirs) and digests(ours), out
        else:
            assert ours.read_bytes() == theirs.read_bytes(), out
    assert np.isfinite(yaml.safe_load((clone / "outputs/eval/l8-vae/metrics.json").read_text())
                       ["silhouette"])  # fmt: skip
