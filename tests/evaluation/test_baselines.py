"""``baseline_*`` keys: each baseline's scores, the best per metric, the model beside it."""

from __future__ import annotations

import numpy as np

from tessera.models.inference import Inference
from tessera.models.scoring.baselines import BaselineResults
from tessera.tasks.evaluation.comparison import (
    baseline_metrics,
    best_baseline,
    versus_line,
    versus_markdown,
)


def _inference(n: int = 40, seed: int = 0) -> Inference:
    """Three tile classes, raw pixels that separate them, and a poor labels-only baseline."""
    rng = np.random.default_rng(seed)
    targets = np.repeat([0, 1, 2], [20, 12, 8])[:n]
    raw = targets[:, None] * 5.0 + rng.normal(0, 0.1, (n, 6))
    z = rng.normal(size=(n, 4))
    return Inference(
        model_type="ssvae", class_names=["a", "b", "c"], latents=z, view1=z, view2=z,
        targets=targets, metas=[{}] * n, metrics={}, capacity_mode="undercomplete",
        class_pred=targets.copy(), raw=raw,
        baselines=BaselineResults(tile_predictions={"labels_only": np.zeros(n, np.int64)}),
    )  # fmt: skip


def test_each_baseline_and_the_best_of_them():
    m = baseline_metrics(_inference(), k=3)
    assert m["baseline_majority_accuracy"] == 0.5  # 20 of 40 tiles are class 0
    assert m["baseline_labels_only_accuracy"] == 0.5  # it always says class 0 too
    assert m["baseline_majority_balanced_accuracy"] == 1 / 3
    assert m["baseline_kmeans_raw_nmi"] > 0.99  # raw pixels separate the classes
    assert m["baseline_accuracy"] == 0.5 and m["baseline_nmi"] == m["baseline_kmeans_raw_nmi"]
    assert "baseline_majority_majority_accuracy" not in m


def test_random_forest_scores_join_as_rf():
    inf = _inference()
    inf.baselines.scores.update({"rf_dice_mean": 0.9, "rf_dice_0": 0.95})
    m = baseline_metrics(inf, k=3)
    assert m["baseline_rf_dice_mean"] == 0.9 and m["baseline_dice_mean"] == 0.9


def test_model_beside_its_best_baseline():
    metrics = {
        "dice_mean": 0.7,
        "baseline_rf_dice_mean": 0.98,
        "nmi": 0.8,
        "baseline_kmeans_raw_nmi": 0.6,
        "baseline_majority_accuracy": 0.9,
    }
    assert best_baseline(metrics, "dice_mean") == ("rf", 0.98)
    assert best_baseline(metrics, "accuracy") == ("majority", 0.9)
    assert best_baseline(metrics, "silhouette") is None
    assert versus_line(metrics) == "dice_mean 0.7 < rf 0.98; nmi 0.8 > kmeans_raw 0.6"
    assert versus_line(metrics, only=("nmi",)) == "nmi 0.8 > kmeans_raw 0.6"
    table = "\n".join(versus_markdown(metrics))
    assert "| dice_mean | 0.7 | per-pixel random forest | 0.98 | -0.28 |" in table
    assert "accuracy" not in table  # the model has no accuracy to compare
