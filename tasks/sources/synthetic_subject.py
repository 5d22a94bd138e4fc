"""A synthetic held-out subject: the MNI152 brain under a deformation and an intensity change
that no training ever sees, with its tissue labels carried through the same deformation.

Where the only labelled brain is the training one, this is the honest held-out case with
exact labels: the anatomy moves (a smaller, rotated, shifted brain, bent by a smooth random
field, on another grid), the scanner changes (another unit, gamma, a bias field, noise),
and the labels are the source's own GM/WM maps warped exactly as the image was. It is the
same person's anatomy, so it tests position and intensity, not another brain's folding:
Colin27 tests that.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.sources.labels import probs_to_classes

SHAPE = (182, 218, 182)  # FSL's MNI152 1 mm grid: another grid than the source's
ORIGIN = (-91.0, -126.0, -72.0)
SCALE = 0.92  # the brain is 8 % smaller
ROTATION_DEG = (-4.0, 3.0, 6.0)  # about x, y, z
SHIFT_MM = (5.0, -7.0, 4.0)
WARP_MM = 3.0  # standard deviation of the smooth displacement's control points
GAMMA, UNIT = 0.8, 900.0  # intensities: (t1 / 255) ** gamma * bias * UNIT, plus noise


def _rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = (math.radians(d) for d in degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], points: int, sd: float) -> Any:
    """A smooth random field on ``shape``: Gaussian control points, cubic upsampling."""
    from scipy.ndimage import zoom

    coarse = rng.normal(0.0, sd, (points,) * len(shape))
    return zoom(coarse, [n / points for n in shape], order=3, mode="nearest")[
        tuple(slice(0, n) for n in shape)
    ]


def source_coordinates(src_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """For each output voxel, the source voxel it samples (3, X, Y, Z): a similarity
    transform about the centres plus the smooth displacement."""
    grid = np.indices(SHAPE, dtype=np.float32).reshape(3, -1)
    centre_out = (np.array(SHAPE, np.float32) - 1) / 2
    centre_src = (np.array(src_shape[:3], np.float32) - 1) / 2
    a = _rotation(ROTATION_DEG).astype(np.float32) / SCALE
    coords = a @ (grid - centre_out[:, None]) + (centre_src + np.array(SHIFT_MM))[:, None]
    coords = coords.reshape(3, *SHAPE)
    for axis in range(3):
        coords[axis] += _smooth_field(rng, SHAPE, 6, WARP_MM).astype(np.float32)
    return coords


def synthetic_subject(
    t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, seed: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """(T1 as uint16 in another unit, uint8 classes 0 background, 1 gm, 2 wm) on
    :data:`SHAPE`, from the MNI152 T1 and its GM/WM probability maps (uint8 or float)."""
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(seed)
    coords = source_coordinates(t1.shape, rng)
    warp = lambda a: map_coordinates(a.astype(np.float32), coords, order=1, cval=0.0)  # noqa: E731
    image = warp(t1)
    probs = np.stack([warp(gm), warp(wm)])
    scale = float(np.iinfo(gm.dtype).max) if gm.dtype.kind in "iu" else 1.0
    classes = probs_to_classes(probs / scale, threshold=0.5)
    brain = image > 0.5
    bias = np.exp(_smooth_field(rng, SHAPE, 4, 0.12))
    values = (np.clip(image, 0, 255) / 255.0) ** GAMMA * bias * UNIT
    values += rng.normal(0.0, 8.0, SHAPE)
    t1_out = np.where(brain, np.clip(np.rint(values), 1, 65535), 0).astype(np.uint16)
    return t1_out, np.where(brain, classes, 0).astype(np.uint8)


def write_synthetic_subject(mni: Path, out: Path) -> tuple[Path, Path]:
    """Write ``out/mni152_warped.nii.gz`` and ``out/mni152_warped_tissue.nii.gz`` from the MNI152
    files in ``mni`` (atomically)."""
    import nibabel as nib

    name = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    images: list[Any] = [nib.load(mni / name.format(t)) for t in ("t1", "gm", "wm")]
    t1, gm, wm = (np.asarray(img.dataobj) for img in images)
    image, classes = synthetic_subject(t1, gm, wm)
    affine = np.eye(4)
    affine[:3, 3] = ORIGIN
    written = []
    for data, stem in ((image, "mni152_warped"), (classes, "mni152_warped_tissue")):
        img = nib.Nifti1Image(data, affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header["descrip"] = b"tessera: MNI152 warped, another unit (synthetic_subject)"
        path = out / f"{stem}.nii.gz"
        tmp = out / f".{stem}.tmp.nii.gz"
        nib.save(img, tmp)
        tmp.replace(path)
        written.append(path)
    return written[0], written[1]
