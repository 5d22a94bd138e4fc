"""One DICOM file (single- or multi-frame, grey or colour) as a channel-first volume on its
patient-space affine.

A series folder goes through MONAI's ``PydicomReader``. A single file is read here with
pydicom itself, because that reader puts colour samples on the slice axis, frames of a
multi-frame file on an in-plane axis, and ignores ``PixelSpacing`` when the patient position
is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.sources.errors import BadInputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _first(ds: Any, keyword: str, groups: tuple[str, ...]) -> Any:
    """``keyword`` from the dataset, else from its shared functional groups, else from the
    first frame's (enhanced multi-frame files keep their geometry there)."""
    if keyword in ds:
        return ds.get(keyword)
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(sequence)
        for group in groups if items else ():
            seq = items[0].get(group)
            if seq and keyword in seq[0]:
                return seq[0].get(keyword)
    return None


def _positions(ds: Any, frames: int, normal: np.ndarray) -> np.ndarray | None:
    """Patient position (LPS) of each frame's first voxel, when the file says."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and len(per_frame) == frames:
        pos = []
        for item in per_frame:
            seq = item.get("PlanePositionSequence")
            if not seq or "ImagePositionPatient" not in seq[0]:
                break
            pos.append([float(v) for v in seq[0].ImagePositionPatient])
        else:
            return np.asarray(pos)
    ipp = _first(ds, "ImagePositionPatient", ("PlanePositionSequence",))
    if ipp is None:
        return None
    origin = np.array([float(v) for v in ipp])
    offsets = ds.get("GridFrameOffsetVector")  # RT dose: frame offsets along the normal
    if offsets is not None and len(offsets) == frames:
        return origin + np.outer([float(v) for v in offsets], normal)
    return origin[None]


def file_affine(ds: Any, frames: int, path: Path) -> np.ndarray:
    """Voxel (column, row, frame) to RAS millimetres."""
    iop = _first(ds, "ImageOrientationPatient", ("PlaneOrientationSequence",))
    row_dir, col_dir = (
        (np.array([float(v) for v in iop[:3]]), np.array([float(v) for v in iop[3:]]))
        if iop is not None and len(iop) == 6
        else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    )
    normal = np.cross(row_dir, col_dir)
    spacing = _first(ds, "PixelSpacing", ("PixelMeasuresSequence",)) or ds.get("ImagerPixelSpacing")
    d_row, d_col = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    pos = _positions(ds, frames, normal)
    step = None
    if pos is not None and len(pos) == frames and frames > 1:
        gaps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
        if gaps.min() <= 0 or (gaps.max() - gaps.min()) > 0.01 * gaps.mean():
            raise BadInputError(
                path, f"irregular frame spacing {gaps.min():.3g}..{gaps.max():.3g} mm"
            )
        step = (pos[-1] - pos[0]) / (frames - 1)
    if step is None:
        thick = _first(ds, "SpacingBetweenSlices", ("PixelMeasuresSequence",)) or _first(
            ds, "SliceThickness", ("PixelMeasuresSequence",)
        )
        step = normal * (float(thick) if thick else 1.0)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * d_col  # columns advance along the row direction
    lps[:3, 1] = col_dir * d_row
    lps[:3, 2] = step
    lps[:3, 3] = pos[0] if pos is not None else 0.0
    return LPS_TO_RAS @ lps


def read_dicom_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(C, X, Y, Z) pixel values (modality LUT applied to grey data) and the RAS affine."""
    import pydicom

    ds = pydicom.dcmread(path)
    try:
        px = np.asarray(ds.pixel_array)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", None) or "its"
        reason = " ".join(str(exc).split())[:200]
        raise BadInputError(path, f"cannot decode {name} pixel data: {reason}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        px = px[None]
    if samples == 1:
        px = px[..., None]
        slope, inter = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0))
        if slope != 1 or inter != 0:
            px = px.astype(np.float64) * slope + inter
    # (frames, rows, cols, samples) -> (samples, cols, rows, frames)
    return np.ascontiguousarray(px.transpose(3, 2, 1, 0)), file_affine(ds, frames, path)
