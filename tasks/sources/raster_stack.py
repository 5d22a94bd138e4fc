"""A scene's bands read as one stack: windows resampled onto the reference grid, with
GDAL's masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling as RioResampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from tessera.tasks.sources.raster import BandRef, Grid, gdal_reason, grid_of
from tessera.tasks.sources.refusals import BadInputError


class RasterStack:
    """Reads windows of a band stack on its reference grid.

    Bands already on the grid are read as they are; others go through a ``WarpedVRT``
    onto the grid with the given resampling.
    """

    def __init__(
        self,
        bands: list[BandRef],
        grid: Grid,
        resampling: str,
        nodata: float | None,
        masked: frozenset[Path] = frozenset(),
    ) -> None:
        self.grid = grid
        self.nodata = nodata
        self._handles: dict[Path, rasterio.io.DatasetReader] = {}
        self._readers: list[tuple[rasterio.io.DatasetReader | WarpedVRT, int]] = []
        self._masks: dict[Path, tuple[rasterio.io.DatasetReader | WarpedVRT, int]] = {}
        self.resampled: list[str] = []
        for b in bands:
            ds = self._handles.get(b.path) or rasterio.open(b.path)
            self._handles[b.path] = ds
            if grid_of(ds, b.path).same_as(grid):
                self._readers.append((ds, b.index))
                if b.path in masked:
                    self._masks.setdefault(b.path, (ds, b.index))
                continue
            vrt = WarpedVRT(
                ds,
                crs=CRS.from_wkt(grid.crs_wkt),
                transform=grid.affine,
                width=grid.width,
                height=grid.height,
                resampling=RioResampling[resampling],
                src_nodata=nodata,
                nodata=nodata,
            )
            self._readers.append((vrt, b.index))
            if b.path in masked:
                self._masks.setdefault(b.path, (vrt, b.index))
            self.resampled.append(b.name)
        first = self._handles[bands[0].path]
        self.dtype = np.dtype(first.dtypes[bands[0].index - 1])

        # Consecutive bands of one dataset are read in one call (one decode per block).
        self._groups: list[tuple[rasterio.io.DatasetReader | WarpedVRT, list[int], int]] = []
        for pos, (reader, idx) in enumerate(self._readers):
            if self._groups and self._groups[-1][0] is reader:
                self._groups[-1][1].append(idx)
            else:
                self._groups.append((reader, [idx], pos))

    @property
    def count(self) -> int:
        """Number of bands."""
        return len(self._readers)

    def read(
        self, row_off: int, col_off: int, height: int, width: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Read a (bands, height, width) window that lies inside the grid."""
        if out is None:
            out = np.empty((self.count, height, width), dtype=self.dtype)
        win = Window(col_off, row_off, width, height)
        for reader, idxs, pos in self._groups:
            try:
                reader.read(idxs, window=win, out=out[pos : pos + len(idxs)])
            except rasterio.errors.RasterioIOError as exc:
                raise BadInputError(
                    reader.name,
                    f"unreadable pixel data; changed since ingest? ({gdal_reason(exc)})",
                ) from None
        return out

    def read_mask(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray | None:
        """(height, width) True where every masked file is opaque; None when no file has an
        alpha band or internal mask."""
        if not self._masks:
            return None
        win = Window(col_off, row_off, width, height)
        ok = np.ones((height, width), dtype=bool)
        for reader, idx in self._masks.values():
            ok &= reader.read_masks(idx, window=win) != 0
        return ok

    def close(self) -> None:
        """Close every handle."""
        for reader, _ in self._readers:
            if isinstance(reader, WarpedVRT):
                reader.close()
        for ds in self._handles.values():
            ds.close()
