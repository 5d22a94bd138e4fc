"""Representation metrics on latent vectors: clustering, linear probe, contrastive retrieval.

Plain numpy/scikit-learn/scipy functions (no torch), so they test and run anywhere.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    balanced_accuracy_score,
    calinski_harabasz_score,
    confusion_matrix,
    davies_bouldin_score,
    f1_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

Clusterer = Literal["kmeans", "gmm"]


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy of ``clusters`` after the best one-to-one matching to ``labels`` (Hungarian)."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    lab_ids, lab = np.unique(labels, return_inverse=True)
    clu_ids, clu = np.unique(clusters, return_inverse=True)
    counts = np.zeros((len(clu_ids), len(lab_ids)), dtype=np.int64)
    np.add.at(counts, (clu, lab), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def fit_clusterer(latents: np.ndarray, k: int, how: Clusterer, seed: int = 0) -> Any:
    """A fitted k-means (k-means++, 4 inits) or full-covariance Gaussian mixture."""
    if how == "kmeans":
        return KMeans(k, init="k-means++", n_init=4, random_state=seed).fit(latents)
    return GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed).fit(
        latents
    )


def assign_clusters(latents: np.ndarray, k: int, how: Clusterer, seed: int = 0) -> np.ndarray:
    """Cluster ids of the latents from :func:`fit_clusterer`."""
    return np.asarray(fit_clusterer(latents, k, how, seed).predict(latents))


def internal_scores(latents: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Silhouette, Davies–Bouldin and Calinski–Harabasz (NaN for fewer than 2 clusters)."""
    n_clusters = len(np.unique(clusters))
    if n_clusters < 2 or n_clusters >= len(latents):
        return {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    return {
        "silhouette": float(silhouette_score(latents, clusters)),
        "davies_bouldin": float(davies_bouldin_score(latents, clusters)),
        "calinski_harabasz": float(calinski_harabasz_score(latents, clusters)),
    }


def external_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """NMI, ARI and Hungarian cluster accuracy against known labels."""
    return {
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "cluster_accuracy": cluster_accuracy(labels, clusters),
    }


def clustering_scores(
    latents: np.ndarray,
    k: int,
    labels: np.ndarray | None = None,
    how: Clusterer = "kmeans",
    seed: int = 0,
) -> dict[str, float]:
    """Internal scores, plus external ones where ``labels`` (≥ 0 entries) are known."""
    return assignment_scores(latents, assign_clusters(latents, k, how, seed), labels)


def assignment_scores(
    latents: np.ndarray, clusters: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    """Scores of a given cluster assignment: internal, plus external where labels are known."""
    out = internal_scores(latents, clusters)
    if labels is not None:
        known = np.asarray(labels) >= 0
        if known.sum() > 1:
            out.update(external_scores(np.asarray(labels)[known], clusters[known]))
    return out


def silhouette_sweep(latents: np.ndarray, k_max: int, seed: int = 0) -> dict[int, float]:
    """k-means silhouette for k = 2 … ``k_max``."""
    top = min(k_max, len(latents) - 1)
    return {
        k: internal_scores(latents, assign_clusters(latents, k, "kmeans", seed))["silhouette"]
        for k in range(2, top + 1)
    }


def linear_probe_accuracy(latents: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    """Mean cross-validated accuracy of a standardised logistic regression on the latents."""
    labels = np.asarray(labels)
    smallest = int(np.bincount(labels).min(initial=0)) if labels.min() >= 0 else 0
    folds = max(2, min(folds, smallest))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    return float(cross_val_score(probe, latents, labels, cv=cv).mean())


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray(a @ b.T)


def retrieval_top1(view1: np.ndarray, view2: np.ndarray) -> float:
    """Share of tiles whose second view is the nearest (cosine) of all second views."""
    sim = _cosine(view1, view2)
    return float((sim.argmax(1) == np.arange(len(view1))).mean())


def info_nce(view1: np.ndarray, view2: np.ndarray, temperature: float = 0.1) -> float:
    """InfoNCE loss of matching each first view to its own second view among all of them."""
    logits = _cosine(view1, view2) / temperature
    return float(np.mean(logsumexp(logits, axis=1) - np.diag(logits)))


def classification_scores(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int
) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy, balanced accuracy, macro-F1 and the majority-class baseline over tiles with
    a known label (≥ 0), and the confusion matrix
    (rows: true class, columns: predicted)."""
    known = np.asarray(labels) >= 0
    y, p = np.asarray(labels)[known], np.asarray(predicted)[known]
    classes = list(range(num_classes))
    matrix = confusion_matrix(y, p, labels=classes)
    if not len(y):
        return {"accuracy": float("nan"), "macro_f1": float("nan")}, matrix
    scores = {
        "accuracy": float(accuracy_score(y, p)),
        # what always answering the commonest class scores: accuracy means little below it
        "majority_accuracy": float(np.bincount(y).max() / len(y)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p)),
        # over the classes that occur (in truth or prediction): an absent class has no F1
        "macro_f1": float(
            f1_score(y, p, labels=np.union1d(y, p), average="macro", zero_division=0)
        ),
    }
    return scores, matrix
