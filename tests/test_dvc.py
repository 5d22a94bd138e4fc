"""Real `dvc repro` in a temporary git repository, and `data.dvc` against `tessera samples`."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import landsat_like, write_nifti

pytestmark = pytest.mark.slow


def _sh(cmd, cwd, env, timeout=240):
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _git_dvc_repo(path, env):
    path.mkdir(exist_ok=True)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.org"],
        ["git", "config", "user.name", "t"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        res = _sh(cmd, path, env)
        assert res.returncode == 0, res.stderr


def test_samples_match_committed_data_dvc(tmp_path, cli, subprocess_env):
    repo = tmp_path / "clone"
    _git_dvc_repo(repo, subprocess_env)
    shutil.copy(REPO / "data.dvc", repo / "data.dvc")
    rc, _out, err = cli("samples", "--dest", repo / "data", cwd=repo)
    assert rc == 0, err
    res = _sh(["dvc", "status", "--json", "data.dvc"], repo, subprocess_env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout or "{}") == {}, res.stdout


def test_dvc_repro_runs_then_is_a_noop(tmp_path, subprocess_env):
    repo = tmp_path / "proj"
    _git_dvc_repo(repo, subprocess_env)
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    for pkg in ("flows", "tasks", "models"):
        shutil.copytree(REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    landsat_like(repo / "data" / "l8", h=96, w=96)
    write_nifti(
        repo / "data" / "vol.nii.gz",
        np.random.default_rng(0).random((12, 14, 10)).astype(np.float32),
        np.eye(4),
    )
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
    params["experiments"] = {
        "l8-vae": {
            "dataset": {"sources": ["l8"]},
            "model": {"type": "vae", "latent_dim": 2, "widths": [4, 8]},
            "loader": {"batch_size": 8},
        }
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    first = _sh(["dvc", "repro"], repo, subprocess_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (repo / "outputs" / "tiles" / "store.json").exists()
    assert (repo / "dvc.lock").exists()
    summary = json.loads((repo / "outputs/models/l8-vae/train_summary.json").read_text())
    assert summary["epochs"] == 1 and summary["model_type"] == "vae"
    assert "Running stage 'train@l8-vae'" in first.stdout
    # evaluation and registration follow training in the same repro
    assert "Running stage 'evaluate@l8-vae'" in first.stdout
    assert "Running stage 'register'" in first.stdout
    ev = json.loads((repo / "outputs/eval/l8-vae/metrics.json").read_text())
    assert ev["silhouette"] is not None and ev["n_tiles"] >= 3
    assert (repo / "outputs/eval/l8-vae/maps/l8_clusters.tif").exists()
    record = json.loads((repo / "outputs/registry/l8-vae.json").read_text())
    assert record["alias"] == "champion" and record["version"] == "1"
    assert record["lineage"]["dvc_lock_md5"] != "none"  # the lock of the previous stages

    second = _sh(["dvc", "repro"], repo, subprocess_env)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout

    params["tile"]["size"] = 16
    params["tile"]["stride"] = 16
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    third = _sh(["dvc", "repro"], repo, subprocess_env)
    assert third.returncode == 0, third.stderr
    assert "Running stage 'tile'" in third.stdout
    assert "Running stage 'ingest'" not in third.stdout
    assert "Running stage 'train@l8-vae'" in third.stdout  # new tiles retrain the model
    assert "Running stage 'register'" in third.stdout
    again = json.loads((repo / "outputs/registry/l8-vae.json").read_text())
    assert again["version"] == "2" and again["previous_champion"] == "1"
    metrics = _sh(["dvc", "metrics", "show", "--json"], repo, subprocess_env)
    assert "best_val_loss" in metrics.stdout and "silhouette" in metrics.stdout, metrics.stderr
    plots = _sh(["dvc", "plots", "show", "--json"], repo, subprocess_env)
    assert plots.returncode == 0 and "silhouette_sweep.csv" in plots.stdout, plots.stderr
