"""The baselines a model is judged against, on a real tiny tile store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.models.data.datamodule import TileDataModule
from tessera.models.nets.vae_nets import TileClassifier
from tessera.models.scoring.baselines import (
    TrainBudget,
    fitted_forest_scores,
    labelled_pixels,
    labelled_rows,
    pooled_pixels,
    predict_tiles,
    train_labels_only,
)
from tests.helpers import training_dir


@pytest.fixture(scope="module")
def store(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny 3-class scene tiled into 16-px tiles (classes differ in band means)."""
    return training_dir(tmp_path_factory.mktemp("baselines"), {}) / "tiles"


def _data(store: Path, labels_per_class: int | None = None) -> TileDataModule:
    dm = TileDataModule(
        str(store), ["scene"], 8, tile_class="majority", labels_per_class=labels_per_class
    )
    dm.setup("fit")
    return dm


def test_random_forest_separates_classes_defined_by_band_values(store):
    dm = _data(store)
    scores, forest = fitted_forest_scores(dm.datasets["train"], dm.datasets["test"], 3, seed=0)
    assert {"dice_0", "dice_1", "dice_2", "iou_mean"} <= set(scores)
    assert scores["dice_mean"] > 0.95  # the class is a function of the band means
    assert forest.n_features_in_ == 4  # fitted, and handed back for the held-out scenes


def test_labelled_pixels_are_capped_and_seeded(store):
    ds = _data(store).datasets["train"]
    x, y = labelled_pixels(ds, 500, seed=0)
    assert x.shape[1] == 4 and len(x) == len(y) and 500 <= len(y) <= 500 + len(ds)
    assert set(np.unique(y)) <= {0, 1, 2}
    again, other = labelled_pixels(ds, 500, seed=0), labelled_pixels(ds, 500, seed=1)
    assert np.array_equal(again[0], x) and not np.array_equal(other[0], x)


def test_labels_only_classifier_is_seeded_and_learns(store):
    dm = _data(store, labels_per_class=2)
    train = dm.datasets["train"]
    assert len(labelled_rows(train)) == 6  # 2 per class, each once
    make = lambda: TileClassifier(4, 3, [8, 16], "batch", "relu", 0.0)  # noqa: E731
    budget = TrainBudget(steps=40, batch_size=4, augment=True, seed=0)
    a = train_labels_only(make, train, budget, lr=1e-2)
    b = train_labels_only(make, train, budget, lr=1e-2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    test = dm.datasets["test"]
    truth = test.targets[test.indices]
    accuracy = float((predict_tiles(a, test) == truth).mean())
    untrained = train_labels_only(make, train, TrainBudget(0, 4), lr=1e-2)
    assert accuracy > 0.6 and accuracy > float((predict_tiles(untrained, test) == truth).mean())


def test_pooled_pixels_bound_the_vector_length():
    x = torch.arange(2 * 3 * 64 * 64, dtype=torch.float32).view(2, 3, 64, 64)
    assert pooled_pixels(x).shape == (2, 3 * 16 * 16)
    small = torch.ones(2, 3, 8, 8)
    assert torch.equal(pooled_pixels(small), small.flatten(1))


def test_a_trained_baseline_gets_the_whole_training_budget(tmp_path):
    from tessera.models.inference import training_steps
    from tessera.models.run.run_config import RunConfig

    run = RunConfig(
        experiment="e", store="s", out_dir=str(tmp_path), dataset={"sources": ["x"]},
        model={"type": "ssvae"},
    )  # fmt: skip
    assert training_steps(run, 60) == 60  # no summary: the checkpoint's own count
    (tmp_path / "train_summary.json").write_text('{"optimizer_steps": 80}')
    assert training_steps(run, 60) == 80  # best.ckpt from an earlier epoch than the last
