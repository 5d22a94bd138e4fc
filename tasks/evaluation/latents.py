"""The learned latent space judged by clustering: k, the 2-D embedding and the scores."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tessera.models.inference import Inference
from tessera.tasks.evaluation.comparison import baseline_metrics
from tessera.tasks.evaluation.latent_metrics import (
    assignment_scores,
    classification_scores,
    clustering_scores,
    fit_clusterer,
    info_nce,
    linear_probe_accuracy,
    retrieval_top1,
    silhouette_sweep,
)


@dataclass
class LatentReport:
    """Scores of one latent space, the k-means assignment, and the sweep behind them."""

    metrics: dict[str, float]
    k: int
    kmeans: Any  # fitted on the evaluated latents; it also assigns the cluster maps' tiles
    clusters: np.ndarray
    sweep: dict[int, float]
    confusion: np.ndarray | None = None
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)


def choose_k(configured: int | None, n_classes: int, sweep: dict[int, float]) -> int:
    """The configured k, else the number of classes, else the sweep's best silhouette."""
    if configured:
        return configured
    if n_classes >= 2:
        return n_classes
    finite = {k: s for k, s in sweep.items() if math.isfinite(s)}
    return max(finite, key=lambda k: finite[k]) if finite else 2


def embed_2d(latents: np.ndarray, seed: int = 0, tsne: bool = True) -> dict[str, np.ndarray]:
    """PCA and (for ≥ 5 tiles) t-SNE projections of the latents to 2D."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    out = {"pca": PCA(2, random_state=seed).fit_transform(latents)}
    if tsne and len(latents) >= 5:
        perplexity = float(min(30.0, (len(latents) - 1) / 3))
        out["tsne"] = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            latents
        )
    return out


def score_latents(
    inf: Inference, k: int | None = None, k_max: int = 10, seed: int = 0, tsne: bool = True
) -> LatentReport:
    """Clustering (k-means and GMM), silhouette sweep, linear probe, contrastive retrieval."""
    z, labels = inf.latents, inf.targets
    n_classes = len(inf.class_names)
    if len(z) < 3:
        raise ValueError(f"{len(z)} tiles are too few to evaluate a latent space (need 3)")
    sweep = silhouette_sweep(z, max(2, min(k_max, len(z) - 1)), seed)
    k = min(choose_k(k, n_classes, sweep), len(z) - 1)
    known = labels if (labels >= 0).sum() > 1 else None
    metrics: dict[str, float] = {"k": float(k), "n_tiles": float(len(z))}
    kmeans = fit_clusterer(z, k, "kmeans", seed)
    clusters = np.asarray(kmeans.predict(z))
    metrics.update(assignment_scores(z, clusters, known))
    gmm = clustering_scores(z, k, known, "gmm", seed)
    metrics.update({f"gmm_{name}": v for name, v in gmm.items()})
    metrics.update({f"silhouette_k{kk}": v for kk, v in sweep.items()})
    if (labels >= 0).any():  # the accuracy of always answering the commonest class
        metrics["majority_accuracy"] = float(
            np.bincount(labels[labels >= 0]).max() / (labels >= 0).sum()
        )
    # stratified folds need two tiles of a class: rarer classes sit out of the probe
    counts = np.bincount(labels[labels >= 0], minlength=max(n_classes, 1))
    probe = (labels >= 0) & (counts[labels.clip(0)] >= 2)
    if len(np.unique(labels[probe])) >= 2:
        metrics["linear_probe_accuracy"] = linear_probe_accuracy(z[probe], labels[probe])
        metrics["linear_probe_tiles"] = float(probe.sum())
    metrics["retrieval_top1"] = retrieval_top1(inf.view1, inf.view2)
    metrics["info_nce"] = info_nce(inf.view1, inf.view2)
    confusion = None
    if inf.class_pred is not None:
        scores, confusion = classification_scores(labels, inf.class_pred, n_classes)
        metrics.update(scores)
    metrics.update(baseline_metrics(inf, k, seed))
    return LatentReport(metrics, k, kmeans, clusters, sweep, confusion, embed_2d(z, seed, tsne))
