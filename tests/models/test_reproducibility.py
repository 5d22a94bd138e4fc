"""The same training in two places: bit-identical checkpoints, summaries and metrics.

Two project folders (different paths, so different working directories) train the same tiny
experiment in separate processes whose environments choose different thread counts and kernel
instruction sets (as two machines would: ``OMP_NUM_THREADS``, ATen's ``ATEN_CPU_CAPABILITY``,
``ONEDNN_MAX_CPU_ISA``, ``MKL_CBWR``), with the thread count and instruction set pinned in
``params.yaml`` as the demo pins them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_EXPERIMENTS, training_dir

EXPERIMENT = "tiny-seg"


@pytest.fixture(scope="module")
def projects(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two projects holding the same tile store, configured with relative paths only."""
    first = training_dir(tmp_path_factory.mktemp("repro"), {})
    second = tmp_path_factory.mktemp("elsewhere") / "a" / "much" / "longer" / "path"
    shutil.copytree(first / "tiles", second / "tiles")
    params = {
        "train": {
            "store": "tiles",
            "out": "models",
            "tracking_uri": "sqlite:///mlflow.db",
            "trainer": {"max_epochs": 2, "threads": 2, "cpu_isa": "AVX2"},
            "loader": {"batch_size": 8},
        },
        "evaluate": {"out": "eval", "tsne": False},
        "experiments": {EXPERIMENT: TINY_EXPERIMENTS[EXPERIMENT]},
    }
    for root in (first, second):
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    return [first, second]


def test_training_is_bit_identical_across_folders_and_thread_settings(projects, cli, monkeypatch):
    machines = (
        {"OMP_NUM_THREADS": "1"},
        {
            "OMP_NUM_THREADS": "2",
            "ATEN_CPU_CAPABILITY": "default",  # measured: changes a conv net's weights here
            "ONEDNN_MAX_CPU_ISA": "SSE41",
            "MKL_CBWR": "COMPATIBLE",
        },
    )
    for root, machine in zip(projects, machines, strict=True):
        for name, value in machine.items():  # what that machine would choose
            monkeypatch.setenv(name, value)
        for stage in ("train", "evaluate"):
            rc, _, err = cli(stage, "--experiment", EXPERIMENT, cwd=root)
            assert rc == 0, err
    a, b = (root / "models" / EXPERIMENT for root in projects)
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "train_summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert str(projects[0]).encode() not in (a / "checkpoints" / "best.ckpt").read_bytes()
    metrics = [(root / "eval" / EXPERIMENT / "metrics.json").read_bytes() for root in projects]
    assert metrics[0] == metrics[1] and b"baseline_rf_dice_mean" in metrics[0]
