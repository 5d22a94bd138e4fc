"""Cloud-Optimised GeoTIFFs written out of core: a tiled GeoTIFF block by block, then a copy.

GDAL's COG driver writes by copy only, so rows go first into a tiled, compressed GeoTIFF
beside the output; the COG (internal overviews, compressed) is then copied from it and
renamed into place. Neither file is ever held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.shutil import copy as rio_copy

from tessera.models.palette import CLASS_PALETTE
from tessera.tasks.sources.raster import Grid
from tessera.tasks.store.files import attempt_path, named

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


@contextmanager
def cog_writer(
    out: Path,
    grid: Grid,
    count: int,
    dtype: str,
    nodata: float | None,
    tags: dict[str, str],
    band_names: Sequence[str] = (),
    colours: dict[int, tuple[int, int, int, int]] | None = None,
    overview_resampling: str = "mode",
    masked: bool = False,
    cog: bool = True,
) -> Iterator[BlockWriter]:
    """Yield a writer of rows; on leaving, the COG replaces ``out`` (nothing half-written).

    Args:
        out: The COG to write.
        grid: The input's grid: CRS, transform, width and height, kept exactly.
        count: Bands.
        dtype: Their numpy dtype name.
        nodata: The nodata value (None: none).
        tags: Dataset metadata (lineage, class names).
        band_names: Band descriptions.
        colours: A colour table for band 1 (a class map).
        overview_resampling: How the overviews are computed (mode for classes).
        masked: Say which pixels have a value with an internal mask band rather than a
            nodata value (a probability of 255/255 is a value).
        cog: False: ``out`` is the tiled GeoTIFF itself, no COG copy (one band of rows of a
            scene mapped in bands, assembled into the COG later).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging, final_tmp = attempt_path(out, ".blocks.tif"), attempt_path(out, ".tmp")
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs_wkt,
        "transform": grid.affine,
        "nodata": nodata,
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
            for i, name in enumerate(band_names, start=1):
                ds.set_band_description(i, name)
            if colours is not None:
                ds.write_colormap(1, colours)
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
                overview_resampling=overview_resampling,
                num_threads="ALL_CPUS",
                blocksize=BLOCK,
            )
        os.replace(final_tmp, out)
    finally:
        staging.unlink(missing_ok=True)
        final_tmp.unlink(missing_ok=True)
