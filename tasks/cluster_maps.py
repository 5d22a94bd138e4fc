"""Per-tile values painted back at the tiles' positions: GeoTIFF at tile resolution.

Each tile of a raster scene becomes one pixel of a grid whose cell is the tile stride, in the
scene's CRS, so a cluster map opens in QGIS over the source scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

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
    scene = t0 * Affine.translation(-int(metas[0]["col_off"]), -int(metas[0]["row_off"]))
    rows, cols = row_off // stride, col_off // stride
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    transform = scene * Affine.scale(stride)
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
