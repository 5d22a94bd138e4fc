"""NIfTI and DICOM volumes: header checks before allocation, MONAI loading, RAS orientation."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tessera.tasks.sources.dicom import check_dicom_header, read_dicom_file, read_dicom_series
from tessera.tasks.sources.quiet import quiet_decoders
from tessera.tasks.sources.refusals import MAX_VOLUME_BYTES, BadInputError, check_exists

__all__ = ["Volume", "check_dicom_header", "check_nifti_header", "load_volume", "to_ras"]
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


def _not_nifti(img: Any) -> str | None:
    """Why a file nibabel loads is not a NIfTI volume, or None."""
    import nibabel as nib

    if isinstance(img, nib.Cifti2Image):
        return "a CIFTI-2 file (surface or connectivity data), not a volume"
    if isinstance(img, nib.Nifti1Pair):  # Nifti1Image, Nifti2Image and the pairs
        return None
    if isinstance(img, nib.AnalyzeImage):
        return "an ANALYZE 7.5 image, not NIfTI: its orientation is undefined; convert it"
    return f"a {type(img).__name__}, not NIfTI"


def check_nifti_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Validate a NIfTI header (dims, dtype, size against the file) without reading voxels.

    A 2-D image is one slice; a NIfTI pair's ``.hdr`` is checked against its ``.img``."""
    import nibabel as nib

    quiet_decoders()
    check_exists(path)
    try:
        img: Any = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for junk
        raise BadInputError(
            path, f"not a readable NIfTI ({type(exc).__name__}: {str(exc)[:100]})"
        ) from None
    if (why := _not_nifti(img)) is not None:
        raise BadInputError(path, why)
    shape = tuple(int(s) for s in img.shape)
    dtype = np.dtype(img.get_data_dtype())
    if dtype.name not in _SUPPORTED:
        raise BadInputError(path, f"unsupported dtype {dtype}")
    if len(shape) == 5 and shape[3] == 1:
        shape = (*shape[:3], shape[4])
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) not in (3, 4):
        raise BadInputError(
            path,
            f"{len(shape)}-D NIfTI {shape}: expected a 2-D or 3-D volume or a "
            "4-D volume with channels last",
        )
    if min(shape) < 1:
        raise BadInputError(path, f"empty dimension in shape {shape}")
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes > MAX_VOLUME_BYTES:
        raise BadInputError(
            path, f"absurd dimensions {shape} ({nbytes / 2**30:.0f} GiB) in header; refused"
        )
    data = Path(img.file_map["image"].filename or path)
    if not data.is_file():
        raise BadInputError(path, f"its image file {data.name} is missing")
    offset = int(img.dataobj.offset) if hasattr(img.dataobj, "offset") else 352
    isize = _gzip_isize(data)
    have = data.stat().st_size if isize is None else isize
    if (isize is None and have < offset + nbytes) or (
        isize is not None and nbytes < 1 << 32 and have < (offset + nbytes) % (1 << 32)
    ):
        raise BadInputError(
            data, f"truncated: header needs {offset + nbytes} bytes, file holds {have}"
        )
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        raise BadInputError(path, "no usable affine (singular or non-finite)")
    return shape, dtype


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
    raw value times a float32 slope exactly. nibabel moves the scaling from a loaded image's
    header into its array proxy (and sets the header's fields to NaN): the proxy is asked.
    """
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    if (slope, inter) != (1.0, 0.0):
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
    """Load a NIfTI (MONAI's reader) or a DICOM file or series folder, channel-first,
    reoriented to RAS, values exact."""
    from monai.data import NibabelReader

    quiet_decoders()
    try:
        if kind == "dicom":
            check_dicom_header(path)
            reader = read_dicom_series if path.is_dir() else read_dicom_file
            data, affine = reader(path)
            out, ras_affine = to_ras(_native(_exact_dtype(data, None)), affine)
            return Volume(out, ras_affine)
        check_nifti_header(path)
        img: Any = NibabelReader().read(str(path))
        arr = _nifti_array(img)
        affine = np.asarray(img.affine, dtype=np.float64)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(
            path, f"unreadable {kind} pixel data ({type(exc).__name__}: {str(exc)[:100]})"
        ) from None
    arr = _native(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 5 and arr.shape[3] == 1:
        arr = arr[:, :, :, 0, :]
    arr = arr[None] if arr.ndim == 3 else np.moveaxis(arr, -1, 0)
    out, ras_affine = to_ras(arr, affine)
    return Volume(out, ras_affine)
