"""Per-tile values painted back at the tiles' positions, at tile resolution.

Each tile of a raster scene becomes one pixel of a GeoTIFF whose cell is the tile stride, in
the scene's CRS, so a cluster map opens in QGIS over the source scene. Each tile of a volume
becomes one voxel of a NIfTI on the volume's affine (stride in-plane, one slice across), so it
opens in ITK-SNAP over the source volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import rasterio
from affine import Affine

from tessera.tasks.tiling.grid import slice_axes, volume_tile_affine

NODATA = -1


def tile_grid(
    metas: Sequence[dict[str, Any]], stride: int
) -> tuple[Affine, tuple[int, int], np.ndarray, np.ndarray]:
    """The tile-resolution grid of one scene's tiles: transform, (rows, cols), tile rows, cols.

    Tile positions come from their pixel offsets, so the grid is exact for any stride.
    """
    row_off = np.array([int(m["row_off"]) for m in metas])
    col_off = np.array([int(m["col_off"]) for m in metas])
    if not metas or not metas[0].get("transform"):
        raise ValueError("tiles have no transform: not a georeferenced raster")
    t0 = Affine(*metas[0]["transform"][:6])
    # the scene's own transform: the tile's transform less its pixel offset
    scene = t0 @ Affine.translation(-int(metas[0]["col_off"]), -int(metas[0]["row_off"]))
    rows, cols = row_off // stride, col_off // stride
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    transform = scene @ Affine.scale(stride)
    return transform, shape, rows, cols


def write_tile_map(
    path: Path, metas: Sequence[dict[str, Any]], values: np.ndarray, stride: int
) -> Path:
    """Write ``values`` (one int per tile, -1 for none) as an int32 GeoTIFF, atomically."""
    transform, shape, rows, cols = tile_grid(metas, stride)
    grid = np.full(shape, NODATA, dtype=np.int32)
    grid[rows, cols] = np.asarray(values, dtype=np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    profile = {
        "driver": "GTiff",
        "height": shape[0],
        "width": shape[1],
        "count": 1,
        "dtype": "int32",
        "crs": metas[0].get("crs"),
        "transform": transform,
        "nodata": NODATA,
        "compress": "deflate",
    }
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(grid, 1)
    tmp.replace(path)
    return path


def volume_grid(
    metas: Sequence[dict[str, Any]], stride: int, axis: int
) -> tuple[np.ndarray, tuple[int, int, int], tuple[np.ndarray, ...]]:
    """The tile-resolution voxel grid of one volume's tiles: affine, shape, voxel indices.

    Voxel (i, j, k) covers ``stride`` source voxels on each in-plane axis and one slice
    across; its centre maps through the affine to the centre of those voxels.
    """
    if not metas or metas[0].get("affine") is None:
        raise ValueError("tiles have no 4x4 affine: not a volume")
    m0 = metas[0]
    local = volume_tile_affine(np.eye(4), axis, int(m0["slice"]), m0["row_off"], m0["col_off"])
    scene = np.asarray(m0["affine"], dtype=np.float64).reshape(4, 4) @ np.linalg.inv(local)
    rows_ax, cols_ax = slice_axes(axis)
    index = np.zeros((3, len(metas)), dtype=np.int64)
    index[rows_ax] = [int(m["row_off"]) // stride for m in metas]
    index[cols_ax] = [int(m["col_off"]) // stride for m in metas]
    index[axis] = [int(m["slice"]) for m in metas]
    shape = tuple(int(v) + 1 for v in index.max(1))
    to_source = np.eye(4)
    for ax in (rows_ax, cols_ax):
        to_source[ax, ax] = stride
        to_source[ax, 3] = (stride - 1) / 2
    return scene @ to_source, shape, tuple(index)  # type: ignore[return-value]


def write_volume_tile_map(
    path: Path, metas: Sequence[dict[str, Any]], values: np.ndarray, stride: int, axis: int
) -> Path:
    """Write ``values`` (one int per tile, -1 for none) as an int32 NIfTI, atomically."""
    affine, shape, index = volume_grid(metas, stride, axis)
    grid = np.full(shape, NODATA, dtype=np.int32)
    grid[index] = np.asarray(values, dtype=np.int32)
    img = nib.Nifti1Image(grid, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    nib.save(img, tmp)
    tmp.replace(path)
    return path
