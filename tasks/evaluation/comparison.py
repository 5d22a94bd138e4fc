"""The model beside what a user would pick instead: ``baseline_*`` keys of ``metrics.json``.

Each baseline's own scores are kept under ``baseline_<name>_<metric>`` (``baseline_rf_dice_mean``,
``baseline_labels_only_accuracy``, ``baseline_majority_accuracy``,
``baseline_kmeans_raw_nmi``); ``baseline_<metric>`` is the best of them on that metric, the
figure the model has to beat and the promotion gate can require it to beat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the comparisons below are read by reports, the CLI and registration, which
    # must not pay for torch, Lightning and scikit-learn (~5 s) to print a line
    from tessera.models.inference import Inference

PREFIX = "baseline_"
BASELINE_NAMES = {
    "rf": "per-pixel random forest",
    "labels_only": "classifier on the labelled tiles alone",
    "majority": "always the commonest class",
    "kmeans_raw": "k-means on raw pixels",
}
"""Every baseline, by the name its keys carry, with what it is."""
HIGHER_IS_BETTER = (
    "dice_mean",
    "iou_mean",
    "heldout_dice_mean",
    "heldout_iou_mean",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "nmi",
    "ari",
    "cluster_accuracy",
    "silhouette",
)
"""Metrics compared between the model and its best baseline."""


def raw_kmeans_scores(
    raw: np.ndarray, k: int, labels: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """k-means (the model's k) on the tiles' raw pixels: internal and, where known, external
    scores."""
    from tessera.tasks.evaluation.latent_metrics import assignment_scores, fit_clusterer

    if len(raw) <= k:
        return {}
    clusters = np.asarray(fit_clusterer(raw, k, "kmeans", seed).predict(raw))
    known = labels if (labels >= 0).sum() > 1 else None
    return assignment_scores(raw, clusters, known)


def tile_class_baselines(inf: Inference) -> dict[str, dict[str, float]]:
    """Classification scores of the baselines' tile classes, and of always answering the
    test split's commonest class."""
    from tessera.tasks.evaluation.latent_metrics import classification_scores

    labels = inf.targets
    known = labels >= 0
    if inf.class_pred is None or not known.any():
        return {}
    k = len(inf.class_names)
    commonest = int(np.bincount(labels[known]).argmax())
    preds = {**inf.baselines.tile_predictions, "majority": np.full(len(labels), commonest)}
    out = {}
    for name, p in preds.items():
        scores = classification_scores(labels, p, k)[0]
        scores.pop("majority_accuracy", None)  # the split's, not this baseline's
        out[name] = scores
    return out


def best_of(per_baseline: dict[str, dict[str, float]]) -> dict[str, float]:
    """``baseline_<metric>``: the best baseline's value of each compared metric."""
    best: dict[str, float] = {}
    for scores in per_baseline.values():
        for metric in HIGHER_IS_BETTER:
            v = scores.get(metric)
            if v is not None and np.isfinite(v) and v > best.get(metric, -np.inf):
                best[metric] = float(v)
    return {f"{PREFIX}{metric}": v for metric, v in best.items()}


def baseline_metrics(inf: Inference, k: int, seed: int = 0) -> dict[str, float]:
    """Every baseline's scores on the evaluated split, and the best of them per metric."""
    per: dict[str, dict[str, float]] = {}
    rf = {m.removeprefix("rf_"): v for m, v in inf.baselines.scores.items() if m.startswith("rf_")}
    if rf:
        per["rf"] = rf
    per.update(tile_class_baselines(inf))
    if inf.raw is not None:
        raw = raw_kmeans_scores(inf.raw, k, inf.targets, seed)
        if raw:
            per["kmeans_raw"] = raw
    out = {f"{PREFIX}{name}_{m}": v for name, scores in per.items() for m, v in scores.items()}
    return out | best_of(per)


def best_baseline(metrics: dict[str, float | None], metric: str) -> tuple[str, float] | None:
    """The baseline that scores best on ``metric`` in a ``metrics.json``, and its value."""
    found = [
        (name, v)
        for name in BASELINE_NAMES
        if (v := metrics.get(f"{PREFIX}{name}_{metric}")) is not None and np.isfinite(v)
    ]
    return max(found, key=lambda nv: nv[1]) if found else None


def model_versus_baseline(
    metrics: dict[str, float | None],
) -> list[tuple[str, float, str, float]]:
    """(metric, model's value, best baseline's name, its value) for every compared metric
    the model and a baseline both have."""
    rows = []
    for metric in HIGHER_IS_BETTER:
        model, best = metrics.get(metric), best_baseline(metrics, metric)
        if model is not None and np.isfinite(model) and best is not None:
            rows.append((metric, float(model), *best))
    return rows


def versus_line(metrics: dict[str, float | None], only: tuple[str, ...] = ()) -> str:
    """``dice_mean 0.762 < rf 0.982`` for each compared metric (those in ``only`` if given)."""
    parts = []
    for metric, model, name, base in model_versus_baseline(metrics):
        if only and metric not in only:
            continue
        sign = ">" if model > base else ("=" if model == base else "<")
        parts.append(f"{metric} {model:.3g} {sign} {name} {base:.3g}")
    return "; ".join(parts)


def versus_markdown(metrics: dict[str, float | None]) -> list[str]:
    """Markdown lines: the table of the model beside its best baseline per metric."""
    rows = model_versus_baseline(metrics)
    if not rows:
        return []
    lines = [
        "## Model versus baseline",
        "",
        "| metric | model | best baseline | its value | margin |",
    ]
    lines.append("| --- | --- | --- | --- | --- |")
    for metric, model, name, base in rows:
        what = BASELINE_NAMES[name]
        lines.append(f"| {metric} | {model:.4g} | {what} | {base:.4g} | {model - base:+.4g} |")
    return lines
