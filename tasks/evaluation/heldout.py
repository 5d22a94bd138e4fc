"""Held-out scores: what a model scores over whole scenes of sources it never trained on
(:func:`tessera.tasks.prediction.scoring.heldout_scores` maps them as ``tessera predict`` does).

A split score of one subject (slabs or blocks of the image the model trained on) measures,
in part, memorisation. A held-out subject or scene is the honest figure: another brain,
another scene. The metrics are ``heldout_dice_<class>``, ``heldout_dice_mean`` (as the split's
``dice_mean``, over the classes present) and ``heldout_recall_<class>``: the share of the
class's labelled pixels that the model gives that class, pooled over every held-out scene;
and per held-out source ``heldout_<source>_dice_<class>``, ``…_dice_mean`` and ``…_recall_<class>``.
The per-pixel baseline (the forest fitted on the training split, given the same normalised
bands) is scored on the same scenes: ``baseline_rf_heldout_dice_mean`` and the rest, and the
best baseline's ``baseline_heldout_dice_mean``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tessera.models.scoring.image_metrics import SegmentationScores

PREFIX = "heldout_"


VOLUME_PANELS = ("sagittal", "coronal", "axial")
VIEW_PIXELS = 1024  # a raster view keeps at most this many pixels along each side


@dataclass
class HeldOutView:
    """Panels of a held-out scene: the image, its labels and the model's classes, each a
    list of 2-D arrays indexed (i, j) with i to the right and j up (RAS for a volume's three
    orthogonal slices; east and north for a raster's one map)."""

    scene: str
    image: list[np.ndarray]
    label: list[np.ndarray]
    predicted: list[np.ndarray]
    panels: tuple[str, ...] = VOLUME_PANELS


@dataclass
class HeldOut:
    """What :func:`heldout_scores` found: metrics, the scenes and label files they come from,
    and a view of each volume."""

    metrics: dict[str, float] = field(default_factory=dict)
    scenes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    views: list[HeldOutView] = field(default_factory=list)


def volume_view(
    scene_id: str, image: np.ndarray, label: np.ndarray, pred: np.ndarray
) -> HeldOutView:
    """Slices through the labelled foreground's centre of mass, on each RAS axis."""
    fg = label > 0
    centre = [
        round(float(c.mean())) if c.size else s // 2
        for c, s in zip(np.nonzero(fg), fg.shape, strict=True)
    ]
    take = lambda a, ax: np.take(a, centre[ax], axis=ax)  # noqa: E731
    return HeldOutView(
        scene_id,
        [take(image, ax) for ax in range(3)],
        [take(label, ax) for ax in range(3)],
        [take(pred, ax) for ax in range(3)],
    )


def raster_view(
    scene_id: str, values: np.ndarray, valid: np.ndarray, label: np.ndarray, pred: np.ndarray
) -> HeldOutView:
    """One map of a raster: the mean of its bands, each stretched to its 2–98 % range, under
    its labels and the model's classes; every k-th pixel past :data:`VIEW_PIXELS` a side."""
    k = max(1, -(-max(label.shape) // VIEW_PIXELS))
    values, valid = values[:, ::k, ::k].astype(np.float32), valid[::k, ::k]
    grey = np.zeros(valid.shape, np.float32)
    for band in values:
        lo, hi = np.percentile(band[valid], (2, 98)) if valid.any() else (0.0, 1.0)
        grey += np.clip((band - lo) / max(float(hi - lo), 1e-6), 0, 1)
    grey = np.where(valid, grey / len(values), 0)
    up = lambda a: np.flipud(a).T  # noqa: E731  rows run south, j runs north
    return HeldOutView(scene_id, [up(grey)], [up(label[::k, ::k])], [up(pred[::k, ::k])], ("map",))


def named_scores(
    scores: SegmentationScores, names: list[str], source: str | None = None
) -> dict[str, float]:
    """``heldout_dice_<name>``, ``heldout_iou_<name>``, ``heldout_recall_<name>`` and the
    means; of one source: ``heldout_<source>_dice_mean`` and its Dice and recall per class."""
    prefix = f"{PREFIX}{source}_" if source else PREFIX
    out = {}
    for key, v in scores.scores().items():
        head, _, index = key.rpartition("_")
        if source and head == "iou":
            continue
        name = names[int(index)] if index.isdigit() else index
        out[f"{prefix}{head}_{name}"] = v
    tp, fn = scores.tp.double(), scores.fn.double()
    for c, name in enumerate(names):
        total = float(tp[c] + fn[c])
        out[f"{prefix}recall_{name}"] = float(tp[c]) / total if total else float("nan")
    return out


def baseline_heldout_scores(
    scores: SegmentationScores, names: list[str], baseline: str = "rf"
) -> dict[str, float]:
    """A baseline's held-out scores as ``baseline_<baseline>_heldout_*``, and the best
    baseline's ``baseline_heldout_dice_mean`` (there is one per-pixel baseline)."""
    from tessera.tasks.evaluation.comparison import PREFIX, best_of

    own = named_scores(scores, names)
    return {f"{PREFIX}{baseline}_{k}": v for k, v in own.items()} | best_of({baseline: own})
