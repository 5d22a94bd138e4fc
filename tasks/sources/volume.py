"""NIfTI and DICOM volumes: header checks before allocation, MONAI loading, RAS orientation."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.sources.dicom import read_dicom_file
from tessera.tasks.sources.errors import BadInputError

MAX_VOLUME_BYTES = 4 << 30
_SUPPORTED = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
# (checked on the dtype's name, so either byte order passes)


@dataclass
class Volume:
    """A channel-first (C, X, Y, Z) array in RAS orientation and its voxel-to-world affine."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along X, Y and Z."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def _gzip_isize(path: Path) -> int | None:
    """Uncompressed size mod 2**32 from a gzip trailer, or None if not gzip."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return None
        fh.seek(-4, 2)
        return int(struct.unpack("<I", fh.read(4))[0])


def check_nifti_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Validate a NIfTI header (dims, dtype, size against the file) without reading voxels."""
    import nibabel as nib

    _check_exists(path)
    try:
        img: Any = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for junk
        raise BadInputError(
            path, f"not a readable NIfTI ({type(exc).__name__}: {str(exc)[:100]})"
        ) from None
    shape = tuple(int(s) for s in img.shape)
    dtype = np.dtype(img.get_data_dtype())
    if dtype.name not in _SUPPORTED:
        raise BadInputError(path, f"unsupported dtype {dtype}")
    if len(shape) == 5 and shape[3] == 1:
        shape = (*shape[:3], shape[4])
    if len(shape) not in (3, 4):
        raise BadInputError(
            path,
            f"{len(shape)}-D NIfTI {shape}: expected a 3-D volume or a "
            "4-D volume with channels last",
        )
    if min(shape) < 1:
        raise BadInputError(path, f"empty dimension in shape {shape}")
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes > MAX_VOLUME_BYTES:
        raise BadInputError(
            path, f"absurd dimensions {shape} ({nbytes / 2**30:.0f} GiB) in header; refused"
        )
    offset = int(img.dataobj.offset) if hasattr(img.dataobj, "offset") else 352
    isize = _gzip_isize(path)
    have = path.stat().st_size if isize is None else isize
    if (isize is None and have < offset + nbytes) or (
        isize is not None and nbytes < 1 << 32 and have < (offset + nbytes) % (1 << 32)
    ):
        raise BadInputError(
            path, f"truncated: header needs {offset + nbytes} bytes, file holds {have}"
        )
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        raise BadInputError(path, "no usable affine (singular or non-finite)")
    return shape, dtype


def check_dicom_header(path: Path) -> None:
    """Validate DICOM files (one file or a series directory) without decoding pixels."""
    import pydicom

    _check_exists(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise BadInputError(path, "empty DICOM directory")
    rows = cols = frames = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f, defer_size=256)
        except Exception as exc:
            raise BadInputError(f, f"not a readable DICOM ({type(exc).__name__})") from None
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise BadInputError(f, "DICOM has no pixel data")
        rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        frames += int(ds.get("NumberOfFrames", 1) or 1)
        if rows < 1 or cols < 1:
            raise BadInputError(f, f"DICOM claims {rows}x{cols} pixels")
        bits = int(ds.get("BitsAllocated", 16))
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if rows * cols * frames * samples * bits // 8 > MAX_VOLUME_BYTES:
            raise BadInputError(f, f"absurd dimensions {rows}x{cols}x{frames} in header; refused")
        # bits, not bytes: 1-bit segmentations pack eight pixels a byte
        need = -(-rows * cols * int(ds.get("NumberOfFrames", 1) or 1) * samples * bits // 8)
        raw = ds.get_item("PixelData")
        length = getattr(raw, "length", None)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        compressed = bool(syntax is not None and syntax.is_compressed)
        if length is not None and length != 0xFFFFFFFF and not compressed and length < need:
            raise BadInputError(f, f"truncated pixel data: {length} of {need} bytes")
        if not compressed and "PixelData" in ds:
            try:
                have = len(ds.PixelData)
            except Exception as exc:
                raise BadInputError(f, f"unreadable pixel data ({type(exc).__name__})") from None
            if have < need:
                raise BadInputError(f, f"truncated pixel data: {have} of {need} bytes")


def _series_affine(folder: Path, affine: np.ndarray) -> np.ndarray:
    """The reader's affine with its slice column measured from ImagePositionPatient.

    MONAI derives the slice step from SliceThickness, which need not equal the spacing of the
    slice positions; a series whose slices are not evenly spaced is refused.
    """
    import pydicom

    pos, normal = [], None
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.asarray(ds.get("ImageOrientationPatient", []), dtype=np.float64)
        ipp = ds.get("ImagePositionPatient")
        if iop.size != 6 or ipp is None:
            return affine
        normal = np.cross(iop[:3], iop[3:])
        pos.append(np.asarray(ipp, dtype=np.float64))
    if len(pos) < 2 or normal is None:
        return affine
    p = np.array(sorted(pos, key=lambda v: float(v @ normal)))
    gaps = np.linalg.norm(np.diff(p, axis=0), axis=1)
    if gaps.min() <= 0 or (gaps.max() - gaps.min()) > 0.01 * gaps.mean():
        raise BadInputError(
            folder,
            f"irregular slice spacing {gaps.min():.3g}..{gaps.max():.3g} mm in the DICOM series",
        )
    step = (p[-1] - p[0]) / (len(p) - 1) * np.array([-1.0, -1.0, 1.0])  # LPS → RAS
    out = affine.copy()
    if float(step @ out[:3, 2]) < 0:
        step = -step
    out[:3, 2] = step
    return out


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise BadInputError(path, "file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")


def _exact_dtype(a: np.ndarray, like: np.dtype | None) -> np.ndarray:
    """Return ``a`` in ``like`` (the on-disk dtype) when that holds every value exactly."""
    if a.dtype.kind != "f":
        return a
    cands = [like] if like is not None and like.kind in "iu" else []
    cands += [np.dtype(t) for t in ("uint8", "int16", "uint16", "int32")]
    finite = a[np.isfinite(a)]
    if finite.size != a.size or not np.all(finite == np.round(finite)):
        return a
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    for dt in cands:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt)
    return a


def _nifti_array(img: Any) -> np.ndarray:
    """A NIfTI image's voxels exactly as the file means them.

    Unscaled data keeps its on-disk dtype; data with ``scl_slope``/``scl_inter`` becomes
    float64 ``raw * slope + inter`` (nibabel's ``get_fdata``), which holds every 8- and 16-bit
    raw value times a float32 slope exactly.
    """
    hdr = img.header
    slope, inter = hdr.get_slope_inter() if hasattr(hdr, "get_slope_inter") else (None, None)
    if slope is not None and (slope != 1 or (inter is not None and inter != 0)):
        return np.asarray(img.get_fdata(dtype=np.float64))
    return np.asarray(img.dataobj.get_unscaled())


def _native(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order (values unchanged)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def to_ras(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip and transpose a (C, X, Y, Z) array to RAS; the affine follows. Values are moved,
    never resampled or converted."""
    import nibabel.orientations as nio

    ornt = nio.io_orientation(affine)
    out = np.stack([nio.apply_orientation(c, ornt) for c in arr])
    return np.ascontiguousarray(out), affine @ nio.inv_ornt_aff(ornt, arr.shape[1:])


def load_volume(path: Path, kind: str) -> Volume:
    """Load with MONAI's reader for ``kind``, channel-first, reoriented to RAS, values exact."""
    from monai.data import NibabelReader, PydicomReader

    try:
        if kind == "nifti":
            check_nifti_header(path)
            reader = NibabelReader()
            img: Any = reader.read(str(path))
            arr = _nifti_array(img)
            affine = np.asarray(img.affine, dtype=np.float64)
        else:
            check_dicom_header(path)
            if path.is_dir():
                dicom = PydicomReader()
                data, meta = dicom.get_data(dicom.read(str(path)))  # numpy: no torch dtype change
                arr = _exact_dtype(np.asarray(data), None)
                affine = _series_affine(path, np.asarray(meta["affine"], dtype=np.float64))
            else:  # one file, maybe multi-frame or colour: (C, X, Y, Z) already
                data, affine = read_dicom_file(path)
                out, ras_affine = to_ras(_native(_exact_dtype(data, None)), affine)
                return Volume(out, ras_affine)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(
            path, f"unreadable {kind} pixel data ({type(exc).__name__}: {str(exc)[:100]})"
        ) from None
    arr = _native(arr)
    if kind == "dicom" and arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 5 and arr.shape[3] == 1:
        arr = arr[:, :, :, 0, :]
    arr = arr[None] if arr.ndim == 3 else np.moveaxis(arr, -1, 0)
    out, ras_affine = to_ras(arr, affine)
    return Volume(out, ras_affine)
