"""Cloud-Optimised GeoTIFFs written out of core: a tiled GeoTIFF block by block, then a copy.

GDAL's COG driver writes by copy only, so rows go first into a tiled, compressed GeoTIFF
beside the output; the COG (internal overviews, compressed) is then copied from it and
renamed into place. Neither file is ever held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.shutil import copy as rio_copy

from tessera.models.palette import CLASS_PALETTE
from tessera.tasks.base.files import attempt_path, named
from tessera.tasks.sources.raster import Grid

BLOCK = 512
CLASS_NODATA = 255


def class_colours(n_classes: int) -> dict[int, tuple[int, int, int, int]]:
    """A colour table for ``n_classes`` class ids (the nodata value transparent)."""
    table = {i: (*CLASS_PALETTE[i % len(CLASS_PALETTE)], 255) for i in range(n_classes)}
    return table | {CLASS_NODATA: (0, 0, 0, 0)}


class BlockWriter:
    """Rows of a raster on ``grid``, written in order into the staging GeoTIFF."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def write(self, row: int, block: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Write (bands, rows, width) starting at ``row``; ``valid`` (rows, width), for a
        file with a mask band, says which pixels have a value."""
        window = rasterio.windows.Window(0, row, block.shape[2], block.shape[1])
        try:
            self.ds.write(block, window=window)
            if valid is not None:
                self.ds.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
        except OSError as exc:
            raise named(exc, self.ds.name) from None


@dataclass(frozen=True)
class Bands:
    """The bands of a map file.

    Args:
        count: How many.
        dtype: Their numpy dtype name.
        nodata: The nodata value (None: none; a writer given ``valid`` rows writes an
            internal mask band instead, as for probabilities, where 255/255 is a value).
        names: Band descriptions.
        colours: A colour table for band 1 (a class map).
        overview_resampling: How the overviews are computed (mode for classes).
    """

    count: int
    dtype: str
    nodata: float | None = None
    names: Sequence[str] = ()
    colours: dict[int, tuple[int, int, int, int]] | None = None
    overview_resampling: str = "mode"


@contextmanager
def cog_writer(
    out: Path, grid: Grid, bands: Bands, tags: dict[str, str], cog: bool = True
) -> Iterator[BlockWriter]:
    """Yield a writer of rows; on leaving, the COG replaces ``out`` (nothing half-written).

    Args:
        out: The COG to write.
        grid: The input's grid: CRS, transform, width and height, kept exactly.
        bands: What its bands hold.
        tags: Dataset metadata (lineage, class names).
        cog: False: ``out`` is the tiled GeoTIFF itself, no COG copy (one band of rows of a
            scene mapped in bands, assembled into the COG later).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging, final_tmp = attempt_path(out, ".blocks.tif"), attempt_path(out, ".tmp")
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": bands.count,
        "dtype": bands.dtype,
        "crs": grid.crs_wkt,
        "transform": grid.affine,
        "nodata": bands.nodata,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    try:
        with (
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
            rasterio.open(staging, "w", **profile) as ds,
        ):
            ds.update_tags(**tags)
            for i, name in enumerate(bands.names, start=1):
                ds.set_band_description(i, name)
            if bands.colours is not None:
                ds.write_colormap(1, bands.colours)
                ds.colorinterp = [ColorInterp.palette]
            yield BlockWriter(ds)
        if not cog:
            os.replace(staging, out)
            return
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            rio_copy(
                staging,
                final_tmp,
                driver="COG",
                compress="deflate",
                overview_resampling=bands.overview_resampling,
                num_threads="ALL_CPUS",
                blocksize=BLOCK,
            )
        os.replace(final_tmp, out)
    finally:
        staging.unlink(missing_ok=True)
        final_tmp.unlink(missing_ok=True)
