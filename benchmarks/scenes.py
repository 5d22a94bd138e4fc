"""Synthetic scenes for the benchmarks: tiled 4-band uint16 GeoTIFFs with texture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

TILE = 256
BANDS = 4


def make_scene(
    path: Path, side: int, compress: str | None, bands: int = BANDS, height: int | None = None
) -> Path:
    """A tiled ``bands``-band uint16 GeoTIFF with texture, ``side`` pixels wide and ``height``
    (``side``) high, written block-row by block-row."""
    height = height or side
    prof = {
        "driver": "GTiff",
        "width": side,
        "height": height,
        "count": bands,
        "dtype": "uint16",
        "crs": "EPSG:32616",
        "transform": Affine(10, 0, 400000, 0, -10, 3500000),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "nodata": 0,
    }
    if compress:
        prof["compress"] = compress
    # the noise is drawn once and shifted along each row of blocks (a fresh draw per row took
    # 1.5 s of a 16384-wide row's 1.6); adding it after the cast gives what adding it before
    # would, as it is whole numbers
    noise = np.random.default_rng(0).integers(0, 200, (bands, TILE, side), dtype=np.uint16)
    x, y = np.arange(side), np.arange(TILE)
    block = np.empty((bands, TILE, side), np.uint16)
    with rasterio.open(path, "w", **prof) as ds:
        for r in range(0, height, TILE):
            base = (
                2000 + 1000 * np.sin((x + r) / 150.0)[None] + 800 * np.cos((y + r) / 90.0)[:, None]
            )
            for b in range(bands):
                block[b] = base * (1 + 0.1 * b)
            block += np.roll(noise, (r // TILE * 37) % side, axis=2)  # not tile-aligned
            ds.write(block, window=Window(0, r, side, TILE))
    return path


def settle() -> None:
    """Write back every dirty page before a timed run, so that each run starts from the same
    state: otherwise the previous run's gigabytes of output, still being written back, throttle
    the next writer (measured: the naive loop at 375 tiles/s just after a run, 1,497 after
    a pause)."""
    os.sync()


def warm(path: Path) -> None:
    """Read the file once so every method sees a warm page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass
