"""DICOM files and series folders as channel-first volumes on their patient-space affine.

Read with pydicom itself. MONAI's ``PydicomReader`` puts colour samples on the slice axis and
the frames of a multi-frame file on an in-plane axis, ignores ``PixelSpacing`` when the
patient position is missing, orders a series by ``InstanceNumber`` (skipping slices without
one) and rescales in float32. Values here are pydicom's ``pixel_array`` with the modality LUT
applied by pydicom (float64 where it rescales); a series is ordered along its slice normal.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.sources.quiet import quiet_decoders
from tessera.tasks.sources.refusals import MAX_VOLUME_BYTES, BadInputError, check_exists

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_PIXELS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


_IMPORTING = threading.Lock()


def _load_pydicom() -> None:
    """Import pydicom and its pixel modules one thread at a time. Their first import from two
    threads at once (files ingested in parallel) handed one thread a partly initialised
    ``pydicom.pixels.utils`` (an import cycle inside pydicom): ``cannot import name``."""
    with _IMPORTING:
        import pydicom.pixels.utils  # noqa: F401


def _undefined_length(elem: Any) -> bool:
    return getattr(elem, "length", None) == 0xFFFFFFFF or bool(
        getattr(elem, "is_undefined_length", False)
    )


def read_dataset(path: Path, **kwargs: Any) -> Any:
    """pydicom's dataset of ``path``, also of a file without the preamble and file meta
    (ACR-NEMA style, or written without them): its transfer syntax is then the encoding
    pydicom found, which is only ever native (uncompressed) pixel data."""
    _load_pydicom()
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, force=True, **kwargs)
        if len(ds) == 0:
            raise BadInputError(path, "not a DICOM file") from None
    if "TransferSyntaxUID" not in ds.file_meta:
        if any(_undefined_length(ds.get_item(k)) for k in _PIXELS if k in ds):
            raise BadInputError(path, "encapsulated (compressed) pixel data, no transfer syntax")
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds


def _check_file(f: Path, frames_before: int) -> int:
    """Validate one DICOM file's header and pixel data length; returns its frame count."""
    _load_pydicom()
    from pydicom.pixels.utils import get_expected_length

    try:
        ds = read_dataset(f, defer_size=256)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f, f"not a readable DICOM ({type(exc).__name__})") from None
    if not any(k in ds for k in _PIXELS):
        raise BadInputError(f, "DICOM has no pixel data")
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f, f"invalid image header ({exc})") from None
    if rows < 1 or cols < 1:
        raise BadInputError(f, f"DICOM claims {rows}x{cols} pixels")
    total = frames_before + frames
    if rows * cols * total * samples * bits // 8 > MAX_VOLUME_BYTES:
        raise BadInputError(f, f"absurd dimensions {rows}x{cols}x{total} in header; refused")
    if ds.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in ds:
        return frames
    # pydicom's count: 1-bit data packs eight pixels a byte, YBR_FULL_422 two samples a pixel
    need = get_expected_length(ds, "bytes")
    try:
        have = len(ds.PixelData)
    except Exception as exc:
        raise BadInputError(f, f"unreadable pixel data ({type(exc).__name__})") from None
    if have < need:
        raise BadInputError(f, f"truncated pixel data: {have} of {need} bytes")
    return frames


def check_dicom_header(path: Path) -> None:
    """Validate DICOM files (one file or a series directory) without decoding pixels."""
    quiet_decoders()
    check_exists(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise BadInputError(path, "empty DICOM directory")
    frames = 0
    for f in files:
        frames += _check_file(f, frames)


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


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines (LPS); the identity's when the file has none."""
    iop = _first(ds, "ImageOrientationPatient", ("PlaneOrientationSequence",))
    if iop is not None and len(iop) == 6:
        return np.array([float(v) for v in iop[:3]]), np.array([float(v) for v in iop[3:]])
    return np.array([1.0, 0, 0]), np.array([0, 1.0, 0])


def _position(ds: Any) -> np.ndarray | None:
    ipp = _first(ds, "ImagePositionPatient", ("PlanePositionSequence",))
    return None if ipp is None else np.array([float(v) for v in ipp])


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
    origin = _position(ds)
    if origin is None:
        return None
    offsets = ds.get("GridFrameOffsetVector")  # RT dose: frame offsets along the normal
    if offsets is not None and len(offsets) == frames:
        return origin + np.outer([float(v) for v in offsets], normal)
    return origin[None]


def _affine(ds: Any, pos: np.ndarray | None, n: int, path: Path, unit: str) -> np.ndarray:
    """Voxel (column, row, frame or slice) to RAS millimetres, the ``n`` planes at ``pos``."""
    row_dir, col_dir = _orientation(ds)
    normal = np.cross(row_dir, col_dir)
    spacing = _first(ds, "PixelSpacing", ("PixelMeasuresSequence",)) or ds.get("ImagerPixelSpacing")
    d_row, d_col = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    step = None
    if pos is not None and len(pos) == n and n > 1:
        gaps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
        if gaps.min() <= 0 or (gaps.max() - gaps.min()) > 0.01 * gaps.mean():
            raise BadInputError(
                path, f"irregular {unit} spacing {gaps.min():.3g}..{gaps.max():.3g} mm"
            )
        step = (pos[-1] - pos[0]) / (n - 1)
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


def file_affine(ds: Any, frames: int, path: Path) -> np.ndarray:
    """Voxel (column, row, frame) to RAS millimetres."""
    row_dir, col_dir = _orientation(ds)
    return _affine(ds, _positions(ds, frames, np.cross(row_dir, col_dir)), frames, path, "frame")


def _pixels(ds: Any, path: Path) -> np.ndarray:
    """(frames, rows, cols, samples) values: pydicom's ``pixel_array``, with its modality LUT
    (or rescale) applied to grey data."""
    _load_pydicom()
    from pydicom.pixels import apply_modality_lut

    try:
        px = np.asarray(ds.pixel_array)
        if int(ds.get("NumberOfFrames", 1) or 1) == 1:
            px = px[None]
        if int(ds.get("SamplesPerPixel", 1) or 1) == 1:
            px = apply_modality_lut(px, ds)[..., None]
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", None) or "its"
        reason = " ".join(str(exc).split())[:200]
        raise BadInputError(path, f"cannot decode {name} pixel data: {reason}") from None
    return px


def read_dicom_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(C, X, Y, Z) pixel values (modality LUT applied to grey data) and the RAS affine."""
    ds = read_dataset(path)
    px = _pixels(ds, path)
    # (frames, rows, cols, samples) -> (samples, cols, rows, frames)
    return np.ascontiguousarray(px.transpose(3, 2, 1, 0)), file_affine(ds, len(px), path)


def _same(folder: Path, slices: list[tuple[Path, Any]], what: str, key: Any) -> None:
    values = {key(ds) for _, ds in slices}
    if len(values) > 1:
        raise BadInputError(folder, f"{len(values)} different {what} in one series folder")


def read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(C, X, Y, Z) values of a folder of single-frame slices, ordered along the slice normal
    by ``ImagePositionPatient``, and the RAS affine; one series, one size, one orientation."""
    slices, affine = ordered_series(folder)
    px = np.concatenate([_pixels(ds, f) for f, ds in slices])
    return np.ascontiguousarray(px.transpose(3, 2, 1, 0)), affine


def source_frames(path: Path) -> tuple[list[tuple[Path, Any]], np.ndarray]:
    """The datasets of a DICOM file or series folder in the order of the volume's last axis
    (a series' slices along their normal; a file alone), and the voxel-to-RAS affine of the
    (column, row, frame) array they make."""
    if path.is_dir():
        return ordered_series(path)
    ds = read_dataset(path, stop_before_pixels=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return [(path, ds)], file_affine(ds, frames, path)


def ordered_series(folder: Path) -> tuple[list[tuple[Path, Any]], np.ndarray]:
    """A series folder's slices ordered along their normal (:func:`read_dicom_series`) and
    their RAS affine, the pixels not decoded."""
    slices = [(f, read_dataset(f)) for f in sorted(p for p in folder.iterdir() if p.is_file())]
    for f, ds in slices:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise BadInputError(f, "a multi-frame file inside a series folder; give it alone")
    _same(folder, slices, "series (SeriesInstanceUID)", lambda d: str(d.get("SeriesInstanceUID")))
    _same(folder, slices, "slice sizes", lambda d: (d.get("Rows"), d.get("Columns")))
    _same(folder, slices, "samples per pixel", lambda d: d.get("SamplesPerPixel", 1))
    _same(folder, slices, "pixel spacings", lambda d: str(d.get("PixelSpacing")))
    row_dir, col_dir = _orientation(slices[0][1])
    for _, ds in slices[1:]:
        r, c = _orientation(ds)
        if not (np.allclose(r, row_dir, atol=1e-4) and np.allclose(c, col_dir, atol=1e-4)):
            raise BadInputError(folder, "slices of different orientations in one series folder")
    pos = None
    if len(slices) > 1:
        found = [(f, _position(ds)) for f, ds in slices]
        missing = [f.name for f, p in found if p is None]
        if missing:
            raise BadInputError(
                folder, f"{missing[0]} has no ImagePositionPatient: the slices cannot be ordered"
            )
        normal = np.cross(row_dir, col_dir)
        order = np.argsort([float(p @ normal) for _, p in found], kind="stable")
        slices = [slices[i] for i in order]
        pos = np.array([found[i][1] for i in order])
    return slices, _affine(slices[0][1], pos, len(slices), folder, "slice")
