"""Uniform plane readers over raster stacks and volumes, with their labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from tessera.tasks.sources.catalog import SceneRecord, guess_kind
from tessera.tasks.sources.labels import (
    load_geojson,
    mask_to_classes,
    probs_to_classes,
    qa_bits_to_classes,
)
from tessera.tasks.sources.raster import BandRef, Grid
from tessera.tasks.sources.raster_stack import RasterStack
from tessera.tasks.sources.volume import load_volume
from tessera.tasks.tiling.grid import slice_axes, tile_transform, volume_tile_affine


class RasterScene:
    """One plane: the band stack on its reference grid."""

    def __init__(self, rec: SceneRecord, base: Path) -> None:
        assert rec.crs_wkt is not None and rec.transform is not None
        self.rec = rec
        self.grid = Grid(rec.crs_wkt, tuple(rec.transform), rec.shape[1], rec.shape[2])
        bands = [
            BandRef(n, base / f, i)
            for n, f, i in zip(rec.band_names, rec.band_files, rec.band_indexes, strict=True)
        ]
        masked = frozenset(base / f for f in rec.masked_files)
        self.stack = RasterStack(bands, self.grid, rec.resampling, rec.nodata, masked)
        self.dtype = self.stack.dtype
        self.n_planes = 1
        self.plane_shape = (self.grid.height, self.grid.width)
        self.label = rec.label()
        self._label_ds: list[Any] = []
        self._shapes: list[tuple[dict[str, Any], int]] = []
        if self.label and self.label.kind == "vector":
            shapes, crs = load_geojson(
                base / (self.label.path or ""), self.label.class_property, self.label.classes
            )
            dst = CRS.from_wkt(rec.crs_wkt)
            self._shapes = [(transform_geom(crs or "EPSG:4326", dst, g), c) for g, c in shapes]
        elif self.label:
            files = [self.label.path] if self.label.path else self.label.paths
            self._label_ds = [rasterio.open(base / f) for f in files]

    def read(self, plane: int, row_off: int, col_off: int, h: int, w: int) -> np.ndarray:
        """(C, h, w) window of plane ``plane`` (rasters have one)."""
        return self.stack.read(row_off, col_off, h, w)

    def read_valid(
        self, plane: int, row_off: int, col_off: int, h: int, w: int
    ) -> np.ndarray | None:
        """(h, w) opaque pixels of the files' alpha bands or internal masks; None without."""
        return self.stack.read_mask(row_off, col_off, h, w)

    def read_label(
        self, plane: int, row_off: int, col_off: int, h: int, w: int
    ) -> np.ndarray | None:
        """(h, w) uint8 class ids of the window, or None without a label."""
        if not self.label:
            return None
        win = rasterio.windows.Window(col_off, row_off, w, h)
        match self.label.kind:
            case "vector":
                from rasterio.features import rasterize

                t = Affine(*tile_transform(self.grid.affine, row_off, col_off))
                return rasterize(self._shapes, out_shape=(h, w), transform=t, fill=0, dtype="uint8")
            case "qa_bits":
                return qa_bits_to_classes(self._label_ds[0].read(1, window=win), self.label)
            case "prob_maps":
                maps = np.stack([ds.read(1, window=win) for ds in self._label_ds])
                return probs_to_classes(maps, self.label.threshold)
            case _:
                ds = self._label_ds[0]
                return mask_to_classes(
                    ds.read(1, window=win), ds.nodata, len(self.label.classes), Path(ds.name)
                )

    def tile_meta(self, plane: int, row_off: int, col_off: int) -> dict[str, Any]:
        """Georeferencing of a tile: CRS WKT and its own 6-coefficient transform."""
        return {
            "crs": self.rec.crs_wkt,
            "transform": list(tile_transform(self.grid.affine, row_off, col_off)),
        }

    def close(self) -> None:
        """Release file handles."""
        self.stack.close()
        for ds in self._label_ds:
            ds.close()


class VolumeScene:
    """Slices of a RAS volume along ``axis``."""

    def __init__(self, rec: SceneRecord, base: Path, axis: int) -> None:
        self.rec = rec
        vol = load_volume(base / rec.files[0], rec.kind)
        self.array, self.affine, self.axis = vol.array, vol.affine, axis
        self.dtype = self.array.dtype
        self.n_planes = self.array.shape[1 + axis]
        r, c = slice_axes(axis)
        self.plane_shape = (self.array.shape[1 + r], self.array.shape[1 + c])
        self.labels: np.ndarray | None = None
        lab = rec.label()
        if lab:
            files = [lab.path] if lab.path else lab.paths
            vols = [load_volume(base / f, guess_kind(Path(f))).array[0] for f in files]
            if lab.kind == "prob_maps":
                self.labels = probs_to_classes(np.stack(vols), lab.threshold)
            else:
                self.labels = mask_to_classes(vols[0], None, len(lab.classes), base / files[0])

    def _plane(self, a: np.ndarray, plane: int) -> np.ndarray:
        return np.take(a, plane, axis=a.ndim - 3 + self.axis)

    def read(self, plane: int, row_off: int, col_off: int, h: int, w: int) -> np.ndarray:
        """(C, h, w) window of slice ``plane``."""
        return self._plane(self.array, plane)[:, row_off : row_off + h, col_off : col_off + w]

    def read_valid(self, plane: int, row_off: int, col_off: int, h: int, w: int) -> None:
        """Volumes carry no mask besides nodata."""
        return None

    def read_label(
        self, plane: int, row_off: int, col_off: int, h: int, w: int
    ) -> np.ndarray | None:
        """(h, w) class ids of the window, or None without a label."""
        if self.labels is None:
            return None
        return self._plane(self.labels, plane)[row_off : row_off + h, col_off : col_off + w]

    def tile_meta(self, plane: int, row_off: int, col_off: int) -> dict[str, Any]:
        """The 4×4 affine from tile ``[row, col, 0, 1]`` to world coordinates."""
        a = volume_tile_affine(self.affine, self.axis, plane, row_off, col_off)
        return {"affine": a.reshape(-1).tolist()}

    def close(self) -> None:
        """Nothing to release."""


def open_scene(rec: SceneRecord, base: Path, axis: int) -> RasterScene | VolumeScene:
    """A plane reader for a catalogue record."""
    return RasterScene(rec, base) if rec.kind == "geotiff" else VolumeScene(rec, base, axis)
