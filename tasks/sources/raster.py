"""GeoTIFF band stacks: validation, reference grids and windowed reads."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.env import set_gdal_config
from rasterio.windows import Window

from tessera.tasks.sources.paths import as_url, exists, is_remote, natural_key, serves_byte_ranges
from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.store.stats import valid_values

SUPPORTED_DTYPES = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
)


MAX_SIDE = 1 << 20  # pixels per side


MAX_ELEMENTS = 1 << 38  # pixels × bands: 256 Gi elements is no real scene


def gdal_reason(exc: BaseException) -> str:
    """GDAL's own words for a failed read: rasterio's message points at the previous
    exception, which holds them."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None and "previous exception" in str(exc) else str(exc)
    return text.split("\n")[0][:160]


GDAL_CACHE_MB = 32  # GDAL's block cache, unless TESSERA_GDAL_CACHEMAX (MB) says otherwise


def bound_gdal_cache() -> None:
    """Bounds GDAL's block cache for the process, once, when this module is imported, before
    any of Tessera's reads or writes: GDAL's default is 5 % of RAM, which a streaming read of
    a big scene fills. ``TESSERA_GDAL_CACHEMAX`` (MB) sets it; a user's own ``GDAL_CACHEMAX``
    is left to GDAL.

    The cache is one for the whole process, and GDAL applies a new maximum at once by flushing
    blocks, whichever thread's file they belong to. Set per call (``rasterio.Env`` in each
    task's thread), it made a GeoTIFF that another thread was writing lose whole writes:
    rows of a class map came out as nodata. So it is never set per call.
    """
    text = os.environ.get("TESSERA_GDAL_CACHEMAX")
    if text is None and "GDAL_CACHEMAX" in os.environ:
        return
    mb = GDAL_CACHE_MB if text is None else int(text) if text.strip().isdigit() else 0
    if mb <= 0:
        raise ValueError(f"TESSERA_GDAL_CACHEMAX={text!r}: expected a whole number of MB")
    set_gdal_config("GDAL_CACHEMAX", mb << 20)  # GDAL takes bytes


bound_gdal_cache()


def gdal_env() -> rasterio.Env:
    """GDAL settings for every read: threaded decompression, and object-store reads that
    fail within a bound (the block cache is the process's, :func:`bound_gdal_cache`)."""
    return rasterio.Env(
        GDAL_NUM_THREADS="ALL_CPUS",
        # object-store reads: a store that hangs fails in bounded time, not never
        GDAL_HTTP_TIMEOUT=os.environ.get("GDAL_HTTP_TIMEOUT", "30"),
        GDAL_HTTP_MAX_RETRY=os.environ.get("GDAL_HTTP_MAX_RETRY", "2"),
    )


@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS, affine transform and shape."""

    crs_wkt: str
    transform: tuple[float, ...]
    height: int
    width: int

    @property
    def affine(self) -> Affine:
        """The transform as an ``Affine``."""
        return Affine(*self.transform)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y), positive."""
        return (abs(self.transform[0]), abs(self.transform[4]))

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return rasterio.transform.array_bounds(self.height, self.width, self.affine)[:4]

    def same_as(self, other: Grid) -> bool:
        """True when both grids coincide pixel for pixel."""
        return (
            self.height == other.height
            and self.width == other.width
            and CRS.from_wkt(self.crs_wkt) == CRS.from_wkt(other.crs_wkt)
            and bool(
                np.allclose(
                    self.transform, other.transform, rtol=0, atol=1e-6 * max(self.resolution)
                )
            )
        )


def open_checked(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster (a local file, or an object in a store) or raise a one-line
    :class:`BadInputError`."""
    if is_remote(path):
        if not exists(path):
            raise BadInputError(as_url(path), "no such object (or the store does not answer)")
        if str(path).startswith("/vsicurl/") and not serves_byte_ranges(path):
            # GDAL then gets whole files where it asked for ranges, and warps zeros
            raise BadInputError(as_url(path), "the server does not serve byte ranges")
    elif not path.exists():
        raise BadInputError(path, "file not found")
    elif path.is_file() and path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        msg = gdal_reason(exc)
        if "not recognized as" in msg or "not a supported file format" in msg:
            raise BadInputError(path, "not a readable raster image") from None
        raise BadInputError(path, f"unreadable raster ({msg})") from None


def grid_of(ds: rasterio.io.DatasetReader, path: Path) -> Grid:
    """Validate a dataset's header and return its grid."""
    if (
        ds.width > MAX_SIDE
        or ds.height > MAX_SIDE
        or (ds.width * ds.height * ds.count > MAX_ELEMENTS)
    ):
        raise BadInputError(
            path, f"absurd dimensions {ds.count}x{ds.height}x{ds.width} in header; refused"
        )
    if ds.transform == Affine.identity() or ds.crs is None:
        gcps, _ = ds.gcps
        by = "GCPs" if gcps else ("RPCs" if ds.rpcs else None)
        if by:
            raise BadInputError(
                path, f"georeferenced by {by} only; warp it first (gdalwarp in.tif out.tif)"
            )
        what = "no CRS" if ds.crs is None else "no geotransform"
        raise BadInputError(path, f"{what}: the raster is not georeferenced")
    for dt in set(ds.dtypes):
        if dt not in SUPPORTED_DTYPES:
            raise BadInputError(path, f"unsupported dtype {dt}")
    t = ds.transform
    return Grid(ds.crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), ds.height, ds.width)


@dataclass(frozen=True)
class BandRef:
    """One band of a stack: its file, the band index in it (0: all bands) and its name."""

    name: str
    path: Path
    index: int = 1


def group_band_files(
    files: list[Path], band_regex: str | None, bands: list[str] | None
) -> dict[str, list[BandRef]]:
    """Group files into scenes of named bands.

    With ``band_regex`` (a ``band`` group, optional ``scene`` group) files are bands of scenes;
    otherwise every file is one scene and its bands are ``bands`` or ``b1..bn``.
    """
    scenes: dict[str, list[BandRef]] = {}
    if band_regex:
        rx = re.compile(band_regex)
        for f in files:
            m = rx.search(f.name)
            if not m:
                continue
            scene = m.groupdict().get("scene") or ""
            scenes.setdefault(scene, []).append(BandRef(m.group("band"), f))
        for scene, refs in scenes.items():
            by_name = {r.name: r for r in refs}
            order = bands or sorted(by_name, key=natural_key)
            missing = [b for b in order if b not in by_name]
            if missing:
                raise BadInputError(refs[0].path.parent, f"scene {scene!r} lacks bands {missing}")
            scenes[scene] = [by_name[b] for b in order]
        return scenes
    for f in files:
        scenes[f.name.split(".")[0]] = [BandRef("", f, 0)]  # index 0: every band of the file
    return scenes


def reference_grid(grids: dict[str, Grid], reference_band: str | None) -> Grid:
    """The named band's grid, else the grid most bands share (ties: finest)."""
    if reference_band:
        if reference_band not in grids:
            raise ValueError(f"reference band {reference_band!r} is not in {sorted(grids)}")
        return grids[reference_band]
    groups: list[tuple[Grid, int]] = []
    for g in grids.values():
        for i, (h, n) in enumerate(groups):
            if h.same_as(g):
                groups[i] = (h, n + 1)
                break
        else:
            groups.append((g, 1))
    groups.sort(key=lambda gn: (-gn[1], gn[0].resolution[0] * gn[0].resolution[1]))
    return groups[0][0]


def alpha_bands(ds: rasterio.io.DatasetReader) -> set[int]:
    """1-based indexes of the alpha bands: transparency, not data."""
    return {i for i, ci in enumerate(ds.colorinterp, 1) if ci == ColorInterp.alpha}


def has_dataset_mask(ds: rasterio.io.DatasetReader) -> bool:
    """Whether GDAL's mask of the file is an alpha band or an internal (per-dataset) mask,
    rather than nodata alone or nothing."""
    return any(
        MaskFlags.per_dataset in flags or MaskFlags.alpha in flags for flags in ds.mask_flag_enums
    )


def count_valid(
    ds: rasterio.io.DatasetReader,
    indexes: list[int],
    nodata: float | None,
    path: Path,
    masked: bool = False,
) -> list[int]:
    """Per band, pixels that are neither nodata nor NaN (nor transparent in the file's mask
    when ``masked``); reading every strip proves the file."""
    rows = max(1, (1 << 22) // max(ds.width * len(indexes), 1))
    n = np.zeros(len(indexes), dtype=np.int64)
    try:
        for r0 in range(0, ds.height, rows):
            win = Window(0, r0, ds.width, min(rows, ds.height - r0))
            ok = valid_values(ds.read(indexes, window=win), nodata)
            if masked:
                ok &= ds.read_masks(indexes[0], window=win)[None] != 0
            n += ok.sum(axis=(1, 2))
    except rasterio.errors.RasterioIOError as exc:
        raise BadInputError(path, f"truncated or corrupt pixel data ({gdal_reason(exc)})") from None
    return [int(v) for v in n]
