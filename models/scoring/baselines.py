"""What a user would train instead, scored on the same split as the model.

- :func:`fitted_forest_scores`: a per-pixel random forest on band values (scikit-learn),
  fitted on a seeded subsample of the training split's labelled pixels;
- :func:`train_labels_only`: a tile classifier trained on the labelled tiles alone, for the
  same number of optimiser steps as the model it is compared with;
- :func:`pooled_pixels`: tiles as raw pixel vectors, for k-means on raw pixels.

The trainers choose which applies to them (``BaseModule.baselines``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.data.augment import augment_batch
from tessera.models.data.tiles import TileDataset, collate_batch
from tessera.models.scoring.image_metrics import SegmentationScores
from tessera.tasks.store.format import IGNORE

FOREST_PIXELS = 60_000
"""Training pixels of the random forest (seeded subsample of the training split)."""
FOREST_TREES = 100
POOLED_SIDE = 16
"""Tiles larger than this are average-pooled to it before k-means on raw pixels."""


@dataclass
class BaselineResults:
    """A model's baselines on the evaluated split: scores already computed (keys
    ``<baseline>_<metric>``, e.g. ``rf_dice_mean``) and tile classes still to be scored
    (baseline name → one class per tile)."""

    scores: dict[str, float] = field(default_factory=dict)
    tile_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    pixel_classifier: Any = None
    """The fitted per-pixel baseline (``predict`` on (N, C) band values in the model's input
    units), for scoring it where the model is scored on held-out scenes too."""


@dataclass(frozen=True)
class TrainBudget:
    """What the evaluated model was trained with, so a trained baseline gets the same: its
    optimiser steps, batch size, augmentation and seed."""

    steps: int
    batch_size: int
    augment: bool = True
    seed: int = 0


def distinct_rows(ds: TileDataset) -> np.ndarray:
    """Dataset positions of its distinct tiles (an oversampled tile counts once), in order."""
    _, first = np.unique(ds.indices, return_index=True)
    return np.sort(first)


def _batches(ds: TileDataset, rows: np.ndarray, batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of the dataset positions ``rows``, in order."""
    for start in range(0, len(rows), batch_size):
        yield collate_batch(ds.__getitems__(rows[start : start + batch_size].tolist()))


def pixel_features(batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A batch's valid labelled pixels as (N, C) band values and (N,) classes."""
    x, label = batch["image"], batch["label"]
    known = batch["valid"] & (label != IGNORE)
    return x.permute(0, 2, 3, 1)[known].numpy(), label[known].numpy()


def labelled_pixels(
    ds: TileDataset, max_pixels: int, seed: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """About ``max_pixels`` labelled pixels drawn evenly over the dataset's tiles (seeded)."""
    rows = distinct_rows(ds)
    per_tile = max(1, math.ceil(max_pixels / max(len(rows), 1)))
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for b in _batches(ds, rows, batch_size):
        if b["label"] is None:
            continue
        for i in range(len(b["image"])):
            one = {key: b[key][i : i + 1] for key in ("image", "label", "valid")}
            x, y = pixel_features(one)
            take = rng.permutation(len(y))[:per_tile]
            feats.append(x[take])
            labels.append(y[take])
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(feats), np.concatenate(labels)


def fitted_forest_scores(
    train: TileDataset,
    test: TileDataset,
    num_classes: int,
    seed: int = 0,
    max_pixels: int = FOREST_PIXELS,
    trees: int = FOREST_TREES,
) -> tuple[dict[str, float], Any]:
    """Dice and IoU (as the model's ``dice_*``, ``iou_*``) of a per-pixel random forest, and
    the fitted forest.

    Empty scores and no forest when the training split has fewer than two labelled classes.
    """
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(trees, min_samples_leaf=2, n_jobs=-1, random_state=seed)
    scores = pixel_classifier_scores(forest, train, test, num_classes, seed, max_pixels)
    return scores, forest if scores else None


def pixel_classifier_scores(
    classifier: Any,
    train: TileDataset,
    test: TileDataset,
    num_classes: int,
    seed: int = 0,
    max_pixels: int = FOREST_PIXELS,
) -> dict[str, float]:
    """Dice and IoU of a scikit-learn ``classifier`` fitted on about ``max_pixels`` labelled
    training pixels' band values and applied to every labelled test pixel."""
    x, y = labelled_pixels(train, max_pixels, seed)
    if len(np.unique(y)) < 2:
        return {}
    classifier.fit(x, y)
    scores = SegmentationScores(num_classes)
    for b in _batches(test, np.arange(len(test)), 64):
        if b["label"] is None:
            continue
        known = b["valid"] & (b["label"] != IGNORE)
        pred = torch.full_like(b["label"], IGNORE)
        if known.any():
            found = classifier.predict(pixel_features(b)[0]).astype(np.int64)
            pred[known] = torch.from_numpy(found)
        scores.update(pred, torch.where(known, b["label"], IGNORE))
    return scores.scores()


def pooled_pixels(x: torch.Tensor, side: int = POOLED_SIDE) -> torch.Tensor:
    """Tiles (B, C, H, W) as raw pixel vectors, average-pooled to at most ``side``²."""
    if x.shape[-1] > side or x.shape[-2] > side:
        x = F.adaptive_avg_pool2d(x, (min(side, x.shape[-2]), min(side, x.shape[-1])))
    return x.flatten(1)


def labelled_rows(ds: TileDataset) -> np.ndarray:
    """Dataset positions of the distinct tiles that carry a class (oversampled repeats once)."""
    if ds.targets is None:
        return np.zeros(0, dtype=np.int64)
    rows = distinct_rows(ds)
    return rows[ds.targets[ds.indices[rows]] >= 0]


@torch.enable_grad()
def train_labels_only(
    make_classifier: Callable[[], nn.Module],
    train: TileDataset,
    budget: TrainBudget,
    lr: float,
    weight_decay: float = 0.0,
) -> nn.Module:
    """A new classifier (seeded) trained by cross-entropy on ``train``'s labelled tiles alone
    (Adam, ``steps`` optimiser steps, seeded shuffling, the same dihedral augmentation)."""
    torch.manual_seed(budget.seed)
    classifier = make_classifier()
    rows = labelled_rows(train)
    steps = budget.steps
    if not len(rows) or steps <= 0:
        return classifier.eval()
    g = torch.Generator().manual_seed(budget.seed)
    opt = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    classifier.train()
    done = 0
    while done < steps:
        order = rows[torch.randperm(len(rows), generator=g).numpy()]
        for b in _batches(train, order, budget.batch_size):
            if len(b["image"]) < 2:  # batch norm needs two tiles
                continue
            if budget.augment:
                b = augment_batch(b, g)
            loss = F.cross_entropy(classifier(b["image"]), b["target"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return classifier.eval()


@torch.no_grad()
def predict_tiles(classifier: nn.Module, ds: TileDataset, batch_size: int = 64) -> np.ndarray:
    """The classifier's class for every tile of ``ds``, in order."""
    preds = [classifier(b["image"]).argmax(1) for b in _batches(ds, np.arange(len(ds)), batch_size)]
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
