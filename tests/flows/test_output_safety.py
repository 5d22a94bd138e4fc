"""No command deletes, renames or misplaces what is not its own output; relative paths are the
working directory's."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tessera.tasks.base.outputs import OutputRefusedError
from tessera.tasks.evaluation.report import check_evaluation_output
from tessera.tasks.registry.register_experiment import check_record_output
from tessera.tasks.sources.samples import copy_samples, sample_files
from tessera.tasks.store.reader import TileStore
from tessera.tasks.training.launch import write_run_config
from tessera.tasks.training.launch_options import LaunchParams
from tests.helpers import write_geotiff


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` with its bytes (None for folders)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_geotiff(
        tmp_path / "in" / "scene.tif", np.arange(256, dtype=np.uint16).reshape(16, 16)
    )


def _tile(cli, src: Path, out: str | Path, cwd: Path) -> tuple[int, str, str]:
    return cli("tile", "--input", src, "--out", out, "--size", 8, cwd=cwd)


def test_a_folder_of_user_files_is_refused_and_untouched(tmp_path, cli, scene):
    keep = tmp_path / "keep"
    (keep / "sub").mkdir(parents=True)
    (keep / "a.txt").write_text("x")
    (keep / "sub" / "b.bin").write_bytes(b"\0\1")
    before = _tree(tmp_path)
    rc, _out, err = _tile(cli, scene, keep, tmp_path)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(keep) in lines[0] and "not a Tessera tile store" in lines[0]
    assert _tree(tmp_path) == before  # nothing written beside it either (no lock, no staging)


def test_the_inputs_own_folder_is_refused(tmp_path, cli, scene):
    before = _tree(tmp_path)
    rc, _, err = _tile(cli, scene, scene.parent, tmp_path)
    assert rc == 1 and "holds the input" in err and len(err.strip().splitlines()) == 1
    assert _tree(tmp_path) == before


def test_a_regular_file_is_refused_not_renamed(tmp_path, cli, scene):
    target = tmp_path / "notes.tif"
    target.write_bytes(b"mine")
    before = _tree(tmp_path)
    rc, _, err = _tile(cli, scene, target, tmp_path)
    assert rc == 1 and str(target) in err
    assert _tree(tmp_path) == before


def test_the_working_directory_and_above_are_refused(tmp_path, cli, scene):
    work = tmp_path / "work"
    work.mkdir()
    before = _tree(tmp_path)
    for out in (".", "..", work):
        rc, _, err = _tile(cli, scene, out, work)
        assert rc == 1 and "working directory" in err, out
    assert _tree(tmp_path) == before


def test_a_user_folder_where_staging_would_go_is_refused(tmp_path, cli, scene):
    staging = tmp_path / "tiles.tmp"
    staging.mkdir()
    (staging / "thesis.docx").write_text("years of work")
    rc, _, err = _tile(cli, scene, tmp_path / "tiles", tmp_path)
    assert rc == 1 and str(staging) in err and "not made by Tessera" in err
    assert (staging / "thesis.docx").read_text() == "years of work"
    assert not (tmp_path / "tiles").exists()


def test_relative_out_is_the_working_directorys(tmp_path, cli, scene):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    rc, out, err = _tile(cli, scene, "my_tiles", work)
    assert rc == 0, err
    assert TileStore.open(work / "my_tiles").info.n_tiles == 4
    assert not Path("/my_tiles").exists()
    rc, out, err = _tile(cli, Path("../../in/scene.tif"), "../up", work)  # ``..`` in both paths
    assert rc == 0, err
    assert len(TileStore.open(tmp_path / "a" / "up")) == 4
    assert str(tmp_path / "a" / "up") in out  # folded, not ``b/../up``


def test_a_previous_store_is_replaced(tmp_path, cli, scene):
    out = tmp_path / "tiles"
    assert _tile(cli, scene, out, tmp_path)[0] == 0
    rc, _, err = cli("tile", "--input", scene, "--out", out, "--size", 16, cwd=tmp_path)
    assert rc == 0, err
    assert len(TileStore.open(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "tiles"]  # no lock, no backup


def test_other_outputs_refuse_user_files(tmp_path):
    user = tmp_path / "eval" / "exp"
    user.mkdir(parents=True)
    (user / "metrics.json").write_text("{}")  # not a report beside it: not an evaluation
    with pytest.raises(OutputRefusedError, match="not a Tessera evaluation"):
        check_evaluation_output(user)
    ours = tmp_path / "eval" / "ok"
    ours.mkdir()
    (ours / "metrics.json").write_text(json.dumps({"mse": 1.0}))
    (ours / "report.md").write_text("# r")
    assert check_evaluation_output(ours) == ours
    emptied = tmp_path / "eval" / "emptied"  # DVC removes a stage's outputs before it runs
    emptied.mkdir()
    (emptied / ".gitignore").write_text("/report.md\n")  # what DVC leaves behind
    assert check_evaluation_output(emptied) == emptied
    cloned = tmp_path / "eval" / "cloned"  # what git keeps of an evaluation: metrics.json alone
    cloned.mkdir()
    (cloned / "metrics.json").write_text(json.dumps({"n_tiles": 12, "mse": 0.5}))
    assert check_evaluation_output(cloned) == cloned
    record = tmp_path / "exp.json"
    record.write_text(json.dumps({"my": "data"}))
    with pytest.raises(OutputRefusedError, match="registry record"):
        check_record_output(record)
    record.write_text(json.dumps({"experiment": "e", "name": "n", "version": "1", "alias": "a"}))
    assert check_record_output(record) == record


def test_training_does_not_write_into_a_user_folder(tmp_path):
    from tessera.models.run.run_config import RunConfig

    user = tmp_path / "models" / "exp"
    user.mkdir(parents=True)
    (user / "weights.pt").write_bytes(b"mine")
    config = RunConfig.model_validate(
        {
            "experiment": "exp",
            "store": str(tmp_path / "tiles"),
            "out_dir": str(user),
            "dataset": {"sources": ["s"]},
            "model": {"type": "vae", "in_channels": 1},
        }
    )
    with pytest.raises(OutputRefusedError, match="not a Tessera training run"):
        write_run_config(config, LaunchParams())
    assert os.listdir(user) == ["weights.pt"]
    fresh = config.model_copy(update={"out_dir": str(tmp_path / "models" / "new")})
    assert write_run_config(fresh, LaunchParams()).is_file()
    assert write_run_config(fresh, LaunchParams()).is_file()  # its own folder: written again
    cloned = tmp_path / "models" / "cloned"  # what git keeps of a run: its summary alone
    cloned.mkdir()
    (cloned / "train_summary.json").write_text(json.dumps({"experiment": "exp", "epochs": 3}))
    assert write_run_config(
        config.model_copy(update={"out_dir": str(cloned)}), LaunchParams()
    ).is_file()


def test_samples_never_overwrite_a_changed_file(tmp_path):
    dest = tmp_path / "data"
    assert len(copy_samples(dest)) == len(sample_files())
    rel = next(iter(sample_files()))
    (dest / rel).write_bytes(b"my edited band")
    with pytest.raises(OutputRefusedError, match="differs from the packaged sample"):
        copy_samples(dest)
    assert (dest / rel).read_bytes() == b"my edited band"
    assert copy_samples(dest, force=True) == [dest / rel]
