"""Tile grids, windows and the exact georeferencing of each tile."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine


@dataclass(frozen=True)
class TileGrid:
    """Tile origins over an image of ``height`` × ``width``; far edges are padded."""

    height: int
    width: int
    size: int
    stride: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.stride < 1:
            raise ValueError("tile size and stride must be positive")
        if self.stride > self.size:
            raise ValueError(f"stride {self.stride} > size {self.size} would skip pixels")

    @staticmethod
    def _origins(extent: int, size: int, stride: int) -> list[int]:
        if extent <= size:
            return [0]
        n = -(-(extent - size) // stride) + 1  # ceil: the last tile reaches the far edge
        return [i * stride for i in range(n)]

    @property
    def row_offsets(self) -> list[int]:
        """Top rows of the tile rows."""
        return self._origins(self.height, self.size, self.stride)

    @property
    def col_offsets(self) -> list[int]:
        """Left columns of the tile columns."""
        return self._origins(self.width, self.size, self.stride)

    def __len__(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for r in self.row_offsets:
            for c in self.col_offsets:
                yield r, c


def tile_transform(transform: Affine, row_off: int, col_off: int) -> tuple[float, ...]:
    """Six coefficients of a tile's own grid: ``rasterio.windows.transform(window, transform)``."""
    t = transform @ Affine.translation(col_off, row_off)
    return (t.a, t.b, t.c, t.d, t.e, t.f)


def slice_axes(axis: int) -> tuple[int, int]:
    """The two in-plane axes (rows, cols) of a slice cut along ``axis`` of an (X, Y, Z) volume."""
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


def volume_tile_affine(
    affine: np.ndarray, axis: int, index: int, row_off: int, col_off: int
) -> np.ndarray:
    """4×4 matrix mapping ``[row, col, 0, 1]`` of a tile to world coordinates.

    The tile is slice ``index`` along ``axis`` of a volume with voxel-to-world ``affine``;
    the third column steps along ``axis``, so the matrix stays invertible.
    """
    rows_ax, cols_ax = slice_axes(axis)
    m = np.zeros((4, 4))
    m[rows_ax, 0] = 1.0
    m[cols_ax, 1] = 1.0
    m[axis, 2] = 1.0
    m[rows_ax, 3] = row_off
    m[cols_ax, 3] = col_off
    m[axis, 3] = index
    m[3, 3] = 1.0
    return np.asarray(affine, dtype=np.float64) @ m
