"""Maps of a whole volume: every slice along the model's axis stitched as a plane, written as
NIfTI on the input's own voxel grid.

A NIfTI input gets its own shape, affine and orientation back (the RAS array Tessera reads is
turned back, never resampled), so the map overlays the input in ITK-SNAP or FSLeyes as it is.
A DICOM series, which has no file-side voxel order, gets the RAS voxel order on the series'
affine. A model that answers per window paints one voxel per window, as the cluster maps do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nib
import nibabel.orientations as nio
import numpy as np

from tessera.tasks.base.files import save_by_rename
from tessera.tasks.prediction.cog import CLASS_NODATA
from tessera.tasks.prediction.raster_maps import (
    Cells,
    MapFiles,
    Scorer,
    StripReader,
    cell_window,
    scene_valid,
)
from tessera.tasks.prediction.stitching import (
    Stitching,
    probability_bytes,
    stitch_plane,
)
from tessera.tasks.tiling.grid import slice_axes
from tessera.tasks.tiling.scene import VolumeScene

LINEAGE_EXTENSION = 6  # NIfTI extension code "comment": the lineage as JSON


class VolumeScores(NamedTuple):
    """A volume's scores in the RAS order the scene holds: probabilities (K, X, Y, Z) as
    uint8 p·255, the classes (X, Y, Z) (the argmax before rounding: rounded, two classes can
    tie) and the voxels with data."""

    probs: np.ndarray
    best: np.ndarray
    ok: np.ndarray

    def classes(self) -> np.ndarray:
        """The class map: ``best`` where there is data, else :data:`CLASS_NODATA` (uint8)."""
        return np.where(self.ok, self.best, CLASS_NODATA).astype(np.uint8)


def _plane_index(axis: int, plane: int) -> tuple[Any, ...]:
    index: list[Any] = [slice(None)] * 3
    index[axis] = plane
    return tuple(index)


def predict_volume_pixels(
    scene: VolumeScene,
    scorer: Scorer,
    stitching: Stitching,
    on_plane: Callable[[], None] | None = None,
) -> VolumeScores:
    """Per-voxel scores (the classes as evaluation scores them), each slice along
    ``scene.axis`` stitched as a plane."""
    n_classes = len(scorer.class_names)
    shape = scene.array.shape[1:]
    probs = np.zeros((n_classes, *shape), dtype=np.uint8)
    best = np.zeros(shape, dtype=np.uint8)
    ok = np.zeros(shape, dtype=bool)
    height, width = scene.plane_shape
    for p in range(scene.n_planes):
        at = _plane_index(scene.axis, p)
        read = StripReader(scene, scorer.normalise, p)

        def write(row: int, scores: np.ndarray, at: tuple[Any, ...] = at, p: int = p) -> None:
            n = scores.shape[1]
            probs[(slice(None), *at)][:, row : row + n] = probability_bytes(scores)
            best[at][row : row + n] = scores.argmax(axis=0)
            ok[at][row : row + n] = scene_valid(scene, row, 0, n, width, p)[1]  # in memory

        stitch_plane(read, scorer.predict, write, (height, width), n_classes, stitching)
        if on_plane is not None:
            on_plane()
    return VolumeScores(probs, best, ok)


def predict_volume_windows(
    scene: VolumeScene, scorer: Scorer, cells: Cells
) -> tuple[VolumeScores, np.ndarray]:
    """Per-window scores and their RAS affine: one voxel per ``cells.stride`` in-plane (the
    window starting there) and one per slice across."""
    size, stride, batch_size = cells.size, cells.stride, cells.batch_size
    n_classes, normalise = len(scorer.class_names), scorer.normalise
    height, width = scene.plane_shape
    rows_ax, cols_ax = slice_axes(scene.axis)
    shape = [0, 0, 0]
    shape[rows_ax], shape[cols_ax] = math.ceil(height / stride), math.ceil(width / stride)
    shape[scene.axis] = scene.n_planes
    probs = np.zeros((n_classes, *shape), dtype=np.uint8)
    best = np.zeros(shape, dtype=np.uint8)
    ok = np.zeros(shape, dtype=bool)
    starts = [(p, i, j) for p in range(scene.n_planes) for i in range(shape[rows_ax])
              for j in range(shape[cols_ax])]  # fmt: skip
    for b in range(0, len(starts), batch_size):
        batch, windows = starts[b : b + batch_size], []
        for p, i, j in batch:
            x, any_valid = cell_window(scene, i * stride, j * stride, size, normalise, p)
            windows.append(x)
            idx = [0, 0, 0]
            idx[rows_ax], idx[cols_ax], idx[scene.axis] = i, j, p
            ok[tuple(idx)] = any_valid
        scores = np.asarray(scorer.predict(np.stack(windows)))
        out = probability_bytes(scores)
        for (p, i, j), v, c in zip(batch, out, scores.argmax(axis=1), strict=True):
            idx = [0, 0, 0]
            idx[rows_ax], idx[cols_ax], idx[scene.axis] = i, j, p
            probs[:, idx[0], idx[1], idx[2]] = v
            best[idx[0], idx[1], idx[2]] = c
    to_source = np.eye(4)
    for ax in (rows_ax, cols_ax):
        to_source[ax, ax] = stride
        to_source[ax, 3] = (stride - 1) / 2
    return VolumeScores(probs, best, ok), scene.affine @ to_source


def _own_order(ras: np.ndarray, source: Any) -> np.ndarray:
    """(X, Y, Z, …) in RAS order back to the NIfTI file's own voxel order."""
    ornt = nio.io_orientation(source.affine)
    back = nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), ornt)
    return np.asarray(nio.apply_orientation(ras, back))


def write_volume_maps(
    files: MapFiles,
    scores: VolumeScores,
    ras_affine: np.ndarray,
    class_names: Sequence[str],
    tags: dict[str, str],
    source: Path | None = None,
) -> list[Path]:
    """The class map (``best``, uint8, 255 without data) and optionally the probabilities
    (X, Y, Z, K) as NIfTI: on ``source``'s own grid (a NIfTI input's shape, affine and
    orientation), else on ``ras_affine``; the lineage in a JSON extension and ``descrip``."""
    outputs = [(files.classes, scores.classes())]
    if files.probabilities is not None:
        outputs.append((files.probabilities, np.moveaxis(scores.probs, 0, -1)))
    header: Any = None
    affine = ras_affine
    image_type: Any = nib.Nifti1Image
    if source is not None:
        img: Any = nib.load(str(source))
        if isinstance(img, nib.Nifti2Image):
            image_type = nib.Nifti2Image
        header, affine = img.header.copy(), img.affine
        outputs = [(path, _own_order(a, img)) for path, a in outputs]
        if outputs[0][1].shape != tuple(img.shape[:3]):
            raise ValueError(f"{source}: map shape {outputs[0][1].shape} is not the input's")
    lineage = tags | {"classes": ",".join(class_names)}
    written = []
    for path, data in outputs:
        out = image_type(data, affine, header=header)
        out.set_data_dtype(np.uint8)
        out.header.set_slope_inter(1.0, 0.0)
        out.header["descrip"] = f"tessera {tags.get('tessera_model', '')}"[:79].encode()
        if header is None:
            out.set_qform(affine, code=1)
            out.set_sform(affine, code=1)
        out.header.extensions.append(
            nib.nifti1.Nifti1Extension(LINEAGE_EXTENSION, json.dumps(lineage).encode())
        )
        written.append(_save(out, path))
    return written


def _save(img: Any, path: Path) -> Path:
    return save_by_rename(path, ".tmp.nii.gz", lambda tmp: nib.save(img, tmp))


def read_lineage(path: Path) -> dict[str, str]:
    """The lineage a Tessera map carries ({} for any other NIfTI)."""
    try:
        img: Any = nib.load(str(path))
        for ext in img.header.extensions:
            if ext.get_code() == LINEAGE_EXTENSION:
                data = json.loads(ext.get_content())
                return data if isinstance(data, dict) and "tessera_model" in data else {}
    except Exception:
        return {}
    return {}
