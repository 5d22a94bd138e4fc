"""Real `dvc repro` in a temporary git repository, and `data.dvc` against `tessera samples`."""

import json
import shutil
import subprocess

import pytest

from tests.conftest import REPO

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
