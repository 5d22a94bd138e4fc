"""What the digits data allows without a VAE: the references the digits benchmark prints
beside its targets, and the fair augmentation it can apply to both classifiers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.cluster import SpectralClustering
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.semi_supervised import LabelSpreading
from torch.utils.data import default_collate


def shift_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate, then shift every image by −1, 0 or +1 pixel on each axis (zero fill): the
    augmentation given alike to the ssvae's batches and the labels-only classifier's."""
    out = default_collate(batch)
    x = out["image"]
    side = x.shape[-1]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2, len(x))).tolist()
    out["image"] = torch.stack(
        [padded[i, :, dy[i] : dy[i] + side, dx[i] : dx[i] + side] for i in range(len(x))]
    )
    return out


def label_spreading_accuracy(
    x: np.ndarray, y: np.ndarray, idx_train: np.ndarray, lab_idx: np.ndarray, idx_test: np.ndarray
) -> float:
    """Test accuracy of label spreading on a 7-nearest-neighbour graph of the training pixels
    (the classic graph method, same labels and unlabelled pool as the ssvae)."""
    known = np.full(len(y), -1)
    known[lab_idx] = y[lab_idx]
    model = LabelSpreading(kernel="knn", n_neighbors=7, alpha=0.2, max_iter=100)
    model.fit(x[idx_train], known[idx_train])
    return float((model.predict(x[idx_test]) == y[idx_test]).mean())


def logistic_accuracy(
    features: np.ndarray, y: np.ndarray, lab_idx: np.ndarray, idx_test: np.ndarray
) -> float:
    """Test accuracy of a logistic regression fitted on the labelled rows of ``features``:
    how linearly a representation separates the classes from 100 labels."""
    model = LogisticRegression(max_iter=5000).fit(features[lab_idx], y[lab_idx])
    return float((model.predict(features[idx_test]) == y[idx_test]).mean())


def spectral_nmi(x: np.ndarray, y: np.ndarray) -> float:
    """NMI of spectral clustering (10-nearest-neighbour graph, k=10) on raw pixels."""
    pred = SpectralClustering(
        10, affinity="nearest_neighbors", n_neighbors=10, random_state=0
    ).fit_predict(x)
    return float(normalized_mutual_info_score(y, pred))
