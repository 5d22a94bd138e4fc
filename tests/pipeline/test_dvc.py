"""Real `dvc repro` in a temporary git repository, and `data.dvc` against `tessera samples`."""

import json
import shutil

import pytest

from tests.helpers import REPO, git_dvc_repo, sh

pytestmark = pytest.mark.slow


def test_samples_match_committed_data_dvc(tmp_path, cli, subprocess_env):
    repo = tmp_path / "clone"
    git_dvc_repo(repo, subprocess_env)
    shutil.copy(REPO / "data.dvc", repo / "data.dvc")
    rc, _out, err = cli("samples", "--dest", repo / "data", cwd=repo)
    assert rc == 0, err
    res = sh(["dvc", "status", "--json", "data.dvc"], repo, subprocess_env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout or "{}") == {}, res.stdout
