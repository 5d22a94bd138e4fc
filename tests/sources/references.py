"""What a file means, read with its own library alone, and the check that a tile store holds
exactly that, at the voxel the file's own header puts it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

from tessera.tasks.store.reader import TileStore


def _tag(ds: pydicom.Dataset, keyword: str) -> object:
    """An attribute from the dataset or its shared or first per-frame functional group."""
    if keyword in ds:
        return ds.get(keyword)
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (ds.get(seq) or [])[:1]:
            for item in group:
                if item.VR == "SQ" and item.value and keyword in item.value[0]:
                    return item.value[0].get(keyword)
    return None


def _frame_positions(ds: pydicom.Dataset) -> np.ndarray | None:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    pos = [
        g.PlanePositionSequence[0].get("ImagePositionPatient")
        for g in per_frame
        if "PlanePositionSequence" in g
    ]
    if per_frame and len(pos) == len(per_frame) and all(p is not None for p in pos):
        return np.asarray(pos, float)
    return None


def dicom_reference(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(C, i, j, k) values and voxel-to-RAS affine from pydicom alone: ``pixel_array`` with
    the modality LUT applied to grey data; a folder's slices ordered along their normal."""
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
    dss = [pydicom.dcmread(f, force=True) for f in files]
    first = dss[0]
    iop = np.array(_tag(first, "ImageOrientationPatient") or [1, 0, 0, 0, 1, 0], float)
    normal = np.cross(iop[:3], iop[3:])
    ipp = [np.array(_tag(d, "ImagePositionPatient") or [0, 0, 0], float) for d in dss]
    order = np.argsort([p @ normal for p in ipp], kind="stable")
    dss, ipp = [dss[i] for i in order], [ipp[i] for i in order]
    planes = []
    for ds in dss:
        px = ds.pixel_array
        px = px[None] if int(ds.get("NumberOfFrames", 1) or 1) == 1 else px
        if int(ds.get("SamplesPerPixel", 1) or 1) == 1:
            px = apply_modality_lut(px, ds)[..., None]
        planes.append(px)
    px = np.concatenate(planes)  # (frames or slices, rows, cols, samples)
    n = len(px)
    frames = _frame_positions(first)
    if len(dss) > 1:
        step = (ipp[-1] - ipp[0]) / (n - 1)
    elif frames is not None and len(frames) == n and n > 1:
        step = (frames[-1] - frames[0]) / (n - 1)
        ipp = [frames[0]]
    elif "GridFrameOffsetVector" in first and n > 1:
        step = normal * float(np.diff(np.asarray(first.GridFrameOffsetVector, float))[0])
    else:
        thick = _tag(first, "SpacingBetweenSlices") or _tag(first, "SliceThickness") or 1
        step = normal * float(thick)  # type: ignore[arg-type]
    spacing = _tag(first, "PixelSpacing") or first.get("ImagerPixelSpacing") or [1, 1]
    ps = np.array(spacing, float)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * ps[1], iop[3:] * ps[0], step, ipp[0]
    return px.transpose(3, 2, 1, 0), np.diag([-1.0, -1, 1, 1]) @ lps


def nifti_reference(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """(C, i, j, k) values as nibabel means them (``get_fdata``), the affine, and whether
    the file is unscaled (its values are then its raw integers or floats)."""
    img = nib.load(str(path))
    values = img.get_fdata()
    raw = np.asarray(img.dataobj.get_unscaled())
    unscaled = raw.dtype.kind == "f" or np.array_equal(values, raw)
    a = raw if unscaled else values
    a = a[..., None] if a.ndim == 2 else a
    a = a[:, :, :, 0, :] if a.ndim == 5 else a
    a = a if a.ndim == 4 else a[..., None]
    return np.moveaxis(a, -1, 0), img.affine, unscaled


def check_scene(store: TileStore, rows: np.ndarray, src: np.ndarray, affine: np.ndarray) -> int:
    """Every valid pixel of the scene's tiles equals the source voxel at its world position;
    every source voxel with data is in some tile. Returns the voxels compared."""
    covered = np.zeros(src.shape[1:], bool)
    to_src = np.linalg.inv(affine)
    for i in rows:
        t = store[int(i)]
        r, c = np.nonzero(t["valid"])
        pix = np.stack([r, c, np.zeros_like(r), np.ones_like(r)]).astype(float)
        ijk = (to_src @ np.asarray(t["meta"]["affine"]).reshape(4, 4) @ pix)[:3]
        idx = np.rint(ijk).astype(int)
        assert np.allclose(ijk, idx, atol=1e-3), "tile pixels fall between source voxels"
        inside = all((idx[a] >= 0).all() and (idx[a] < src.shape[a + 1]).all() for a in range(3))
        assert inside, "a tile pixel maps outside the source volume"
        np.testing.assert_array_equal(t["image"][:, r, c], src[:, idx[0], idx[1], idx[2]])
        covered[tuple(idx)] = True
    valid = np.isfinite(src).all(axis=0)  # NaN is no data
    assert covered[valid].all(), f"{(~covered[valid]).sum()} of {valid.sum()} voxels in no tile"
    return int(covered.sum())
