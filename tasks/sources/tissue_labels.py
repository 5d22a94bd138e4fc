"""Tissue classes of a skull-stripped T1 from its intensities alone, for a held-out subject
that ships without labels.

Three clusters of the brain's intensities (k-means, seeded) are CSF, grey matter and white
matter, darkest first, as in a T1. The classes written are Tessera's: background (outside
the brain, and CSF), gm, wm. These are labels derived from intensity, not a manual
segmentation; where a report shows a score against them it says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("background", "gm", "wm")


def intensity_tissue_classes(t1: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 classes of ``t1`` (0 outside the brain, which is exactly 0): the brain's darkest
    k-means cluster (CSF) as background 0, the middle one as gm 1, the brightest as wm 2."""
    from sklearn.cluster import KMeans

    brain = t1 > 0
    values = t1[brain].astype(np.float64).reshape(-1, 1)
    km = KMeans(3, n_init=4, random_state=seed).fit(values[::7])
    rank = np.empty(3, dtype=np.int64)
    rank[np.argsort(km.cluster_centers_.ravel())] = np.arange(3)
    tissue = np.array([0, 1, 2], dtype=np.uint8)[rank[km.predict(values)]]
    out = np.zeros(t1.shape, dtype=np.uint8)
    out[brain] = tissue
    return out


def write_tissue_classes(t1_path: Path, out: Path) -> Path:
    """The classes of the NIfTI ``t1_path`` as a uint8 NIfTI on its grid, written atomically."""
    import nibabel as nib

    img: Any = nib.load(str(t1_path))
    classes = intensity_tissue_classes(np.asarray(img.dataobj))
    label = nib.Nifti1Image(classes, img.affine, header=img.header)
    label.set_data_dtype(np.uint8)
    label.header.set_slope_inter(1.0, 0.0)
    label.header["descrip"] = b"tessera: intensity k-means 0 bg+CSF 1 GM 2 WM"
    tmp = out.with_name(f".{out.name}.tmp.nii.gz")
    nib.save(label, tmp)
    tmp.replace(out)
    return out
