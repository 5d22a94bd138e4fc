"""``clusters.json``: the k-means of an evaluation's latent space, kept for new scenes.

The cluster maps of ``tessera evaluate`` assign every tile to the k-means fitted on the
evaluated latents; ``tessera predict`` paints a latent-only model's windows (``vae``: μ) with
the same centroids, so a new scene's clusters mean what the evaluation's mean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tessera.tasks.base.files import atomic_write_json

CLUSTERS_FILE = "clusters.json"


def write_clusters(out: Path, centroids: np.ndarray, k: int, model_type: str) -> Path:
    """``out/clusters.json``: the centroids (k, D) and the model type, atomically."""
    body = {
        "model_type": model_type,
        "k": int(k),
        "centroids": np.asarray(centroids, dtype=np.float64).tolist(),
    }
    atomic_write_json(out / CLUSTERS_FILE, body)
    return out / CLUSTERS_FILE


def read_centroids(path: Path) -> np.ndarray | None:
    """The centroids of a ``clusters.json``; None when there is none or it is not one."""
    try:
        data = json.loads(path.read_text())
        centroids = np.asarray(data["centroids"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return centroids if centroids.ndim == 2 and len(centroids) >= 2 else None


def nearest(latents: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of each latent's nearest centroid (Euclidean, as ``KMeans.predict``)."""
    d2 = ((latents[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(d2.argmin(axis=1))
