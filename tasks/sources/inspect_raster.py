"""Inspection of GeoTIFF sources: band stacks, reference grids, labels on the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from tessera.tasks.sources.labels import load_geojson
from tessera.tasks.sources.paths import display_path, is_remote, natural_key, sha256_file
from tessera.tasks.sources.raster import (
    BandRef,
    Grid,
    alpha_bands,
    count_valid,
    grid_of,
    group_band_files,
    has_dataset_mask,
    open_checked,
    reference_grid,
)
from tessera.tasks.sources.records import (
    SceneRecord,
    label_classes,
    label_paths,
    resolved_label_json,
    source_files,
    unexpected,
)
from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import LabelSpec, SourceSpec
from tessera.tasks.sources.stac_source import stac_scenes


def _check_raster_label(label: LabelSpec, grid: Grid, base: Path) -> list[Path]:
    files = label_paths(label, base)
    if label.kind == "vector":
        shapes, crs = load_geojson(files[0], label.class_property, label.classes)
        from rasterio.warp import transform_geom

        left, bottom, right, top = grid.bounds()
        xs: list[float] = []
        ys: list[float] = []
        for geom, _ in shapes:
            try:
                g = transform_geom(
                    crs or "EPSG:4326", rasterio.crs.CRS.from_wkt(grid.crs_wkt), geom
                )
            except Exception as exc:  # GDAL raises CPLE_* errors outside RasterioError
                raise BadInputError(
                    files[0],
                    "label extent mismatch: features cannot be placed "
                    f"in the image CRS ({str(exc)[:80]})",
                ) from None
            coords = np.asarray(list(_iter_coords(g["coordinates"])))
            xs += [coords[:, 0].min(), coords[:, 0].max()]
            ys += [coords[:, 1].min(), coords[:, 1].max()]
        if max(xs) < left or min(xs) > right or max(ys) < bottom or min(ys) > top:
            raise BadInputError(files[0], "label extent mismatch: no feature overlaps the image")
        return files
    for f in files:
        with open_checked(f) as ds:
            g = grid_of(ds, f)
            if not g.same_as(grid):
                raise BadInputError(
                    f,
                    f"label extent mismatch: grid {g.height}x{g.width} "
                    f"{g.transform} differs from image {grid.height}x{grid.width} "
                    f"{grid.transform}",
                )
            count_valid(ds, [1], None, f)
    return files


def _iter_coords(c: object) -> list[tuple[float, float]]:
    if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
        return [(float(c[0]), float(c[1]))]
    out: list[tuple[float, float]] = []
    for item in c:  # type: ignore[attr-defined]
        out += _iter_coords(item)
    return out


def _raster_mask_max(path: Path) -> int:
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True)
        return int(a.max()) if a.count() else 0


def inspect_raster_source(
    spec: SourceSpec, base: Path, errors: list[BadInputError]
) -> list[SceneRecord]:
    """Validate a GeoTIFF source (or the Items of a STAC one) and describe each scene."""
    if spec.kind == "stac":
        scenes = stac_scenes(spec, base)
    else:
        files = source_files(spec, base)
        good = []
        for f in files:
            try:
                open_checked(f).close()
                good.append(f)
            except BadInputError as exc:
                errors.append(exc)
        scenes = group_band_files(good, spec.band_regex, spec.bands)
        if not scenes and errors:
            return []
        if not scenes:
            raise BadInputError(files[0].parent, f"no file matches band_regex {spec.band_regex!r}")
    records: list[SceneRecord] = []
    for scene, bands in sorted(scenes.items(), key=lambda kv: natural_key(kv[0])):
        alone = scene if spec.kind == "stac" else spec.name  # an Item is named by its id
        sid = alone if len(scenes) == 1 else f"{spec.name}/{scene}"
        try:
            records.append(_inspect_raster_scene(spec, base, sid, bands))
        except BadInputError as exc:
            errors.append(exc)
        except Exception as exc:  # a reader's own error still deserves one line, not a crash
            errors.append(unexpected(bands[0].path, exc))
    return records


def _inspect_raster_scene(
    spec: SourceSpec, base: Path, sid: str, bands: list[BandRef]
) -> SceneRecord:
    grids: dict[str, Grid] = {}
    dtypes: set[str] = set()
    nodatas: set[float | None] = set()
    names: list[str] = []
    refs = []
    masked: set[Path] = set()
    for b in bands:
        with open_checked(b.path) as ds:
            g = grid_of(ds, b.path)
            alpha = alpha_bands(ds)
            idxs = [b.index] if b.index else [i for i in range(1, ds.count + 1) if i not in alpha]
            if not idxs:
                raise BadInputError(b.path, "has only alpha bands: no data")
            if not b.index and spec.bands and len(spec.bands) != len(idxs):
                raise BadInputError(
                    b.path,
                    f"has {len(idxs)} data bands but {len(spec.bands)} band names are configured",
                )
            if has_dataset_mask(ds):
                masked.add(b.path)
            for k, i in enumerate(idxs):
                name = (
                    b.name
                    or (spec.bands[k] if spec.bands else None)
                    or (ds.descriptions[i - 1] or f"b{i}")
                )
                names.append(name)
                refs.append((name, b.path, i))
                grids[name] = g
                dtypes.add(ds.dtypes[i - 1])
                nodatas.add(ds.nodatavals[i - 1])
    if len(dtypes) > 1:
        raise BadInputError(bands[0].path, f"bands have mixed dtypes {sorted(dtypes)}")
    nodata = spec.nodata if spec.nodata is not None else next(iter(nodatas))
    grid = reference_grid(grids, spec.reference_band)
    valid = 0
    for path in dict.fromkeys(p for _, p, _ in refs):
        mine = [(name, i) for name, p, i in refs if p == path]
        with rasterio.open(path) as ds:
            counts = count_valid(ds, [i for _, i in mine], nodata, path, path in masked)
        for (name, _), n in zip(mine, counts, strict=True):
            if n == 0:
                what = "NaN" if nodata is None else f"nodata ({nodata:g}) or NaN"
                what += " or transparent" if path in masked else ""
                raise BadInputError(path, f"band {name} is all {what}: no valid pixel")
            if grids[name].same_as(grid):
                valid = max(valid, n)
    label_files: list[Path] = []
    classes: list[str] = []
    label_json = None
    if spec.label:
        label_files = _check_raster_label(spec.label, grid, base)
        mx = _raster_mask_max(label_files[0]) if spec.label.kind == "raster" else None
        classes = label_classes(spec.label, label_files, mx)
        label_json = resolved_label_json(spec.label, label_files, classes, base)
    scene_files = list(dict.fromkeys(p for _, p, _ in refs))
    return SceneRecord(
        scene_id=sid,
        source=spec.name,
        kind="geotiff",
        files=[display_path(p, base) for p in scene_files],
        sha256=[sha256_file(p) for p in scene_files],
        band_names=names,
        band_files=[display_path(p, base) for _, p, _ in refs],
        band_indexes=[i for _, _, i in refs],
        shape=[len(names), grid.height, grid.width],
        dtype=dtypes.pop(),
        crs_wkt=grid.crs_wkt,
        transform=list(grid.transform),
        resolution=list(grid.resolution),
        bounds=list(grid.bounds()),
        nodata=nodata,
        resampling=spec.resampling,
        resampled_bands=[n for n in names if not grids[n].same_as(grid)],
        label_kind=spec.label.kind if spec.label else None,
        label_files=[display_path(p, base) for p in label_files],
        label_sha256=[sha256_file(p) for p in label_files if p.is_file() or is_remote(p)],
        class_names=classes,
        label_spec=label_json,
        valid_fraction=valid / (grid.height * grid.width),
        masked_files=[display_path(p, base) for p in scene_files if p in masked],
    )
