"""The catalogue: one validated record per scene or volume, written as Parquet."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from pydantic import BaseModel

from tasks.errors import BadInputError
from tasks.files import atomic_write_bytes, display_path, natural_key, resolve_paths, sha256_file
from tasks.labels import load_geojson
from tasks.raster import (
    BandRef,
    Grid,
    count_valid,
    gdal_env,
    grid_of,
    group_band_files,
    open_checked,
    reference_grid,
)
from tasks.specs import LabelSpec, SourceSpec
from tasks.volume import Volume, check_dicom_header, check_nifti_header, load_volume


class SceneRecord(BaseModel):
    """Everything later stages need to know about one scene or volume."""

    scene_id: str
    source: str
    kind: str
    files: list[str]
    sha256: list[str]
    band_names: list[str]
    band_files: list[str] = []
    band_indexes: list[int] = []
    shape: list[int]
    dtype: str
    crs_wkt: str | None = None
    transform: list[float] | None = None
    affine: list[float] | None = None
    resolution: list[float]
    bounds: list[float]
    nodata: float | None = None
    resampling: str = "bilinear"
    resampled_bands: list[str] = []
    label_kind: str | None = None
    label_files: list[str] = []
    label_sha256: list[str] = []
    class_names: list[str] = []
    label_spec: str | None = None
    valid_fraction: float = 1.0

    def label(self) -> LabelSpec | None:
        """The label specification, resolved to the recorded label files."""
        return LabelSpec.model_validate_json(self.label_spec) if self.label_spec else None


def _volume_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".dcm", ".dicom")) or path.is_dir():
        return "dicom"
    return None


def guess_kind(path: Path) -> str:
    """Source kind from a file name: NIfTI, DICOM (file or directory) or GeoTIFF."""
    return _volume_kind(path) or "geotiff"


def _label_files(label: LabelSpec, base: Path) -> list[Path]:
    return [base / p for p in ([label.path] if label.path else label.paths)]


def _check_raster_label(label: LabelSpec, grid: Grid, base: Path) -> list[Path]:
    files = _label_files(label, base)
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


def _label_classes(label: LabelSpec, files: list[Path], grid_values: int | None) -> list[str]:
    if label.classes:
        return label.classes
    if label.kind == "prob_maps":
        return ["background", *[f.name.split(".")[0] for f in files]]
    n = (grid_values or 0) + 1
    return [f"class_{i}" for i in range(n)]


def _unexpected(path: Path, exc: Exception) -> BadInputError:
    """An unforeseen reader error, as a one-line rejection of the file."""
    return BadInputError(path, f"could not be read ({type(exc).__name__}: {str(exc)[:120]})")


def _source_files(spec: SourceSpec, base: Path) -> list[Path]:
    """The source's image files (its label files excluded); none is an error."""
    files = resolve_paths(spec.paths, spec.glob, base)
    if not files:
        raise BadInputError(base / (spec.glob or ""), f"source {spec.name!r} matches no files")
    if spec.label:
        label_paths = {p.resolve() for p in _label_files(spec.label, base)}
        files = [f for f in files if f.resolve() not in label_paths]
    return files


def _resolved_label_json(
    label: LabelSpec, files: list[Path], classes: list[str], base: Path
) -> str:
    """The label spec with its class names and file paths as recorded in the catalogue."""
    return label.model_copy(
        update={
            "classes": classes,
            "path": display_path(files[0], base) if label.path else None,
            "paths": [display_path(p, base) for p in files] if label.paths else [],
        }
    ).model_dump_json(by_alias=True)


def _raster_mask_max(path: Path) -> int:
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True)
        return int(a.max()) if a.count() else 0


def inspect_raster_source(
    spec: SourceSpec, base: Path, errors: list[BadInputError]
) -> list[SceneRecord]:
    """Validate a GeoTIFF source and describe each of its scenes."""
    files = _source_files(spec, base)
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
        sid = spec.name if len(scenes) == 1 else f"{spec.name}/{scene}"
        try:
            records.append(_inspect_raster_scene(spec, base, sid, bands))
        except BadInputError as exc:
            errors.append(exc)
        except Exception as exc:  # a reader's own error still deserves one line, not a crash
            errors.append(_unexpected(bands[0].path, exc))
    return records


def _inspect_raster_scene(
    spec: SourceSpec, base: Path, sid: str, bands: list[BandRef]
) -> SceneRecord:
    grids: dict[str, Grid] = {}
    dtypes: set[str] = set()
    nodatas: set[float | None] = set()
    names: list[str] = []
    refs = []
    for b in bands:
        with open_checked(b.path) as ds:
            g = grid_of(ds, b.path)
            idxs = [b.index] if b.index else list(range(1, ds.count + 1))
            if not b.index and spec.bands and len(spec.bands) != ds.count:
                raise BadInputError(
                    b.path,
                    f"has {ds.count} bands but {len(spec.bands)} band names are configured",
                )
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
            counts = count_valid(ds, [i for _, i in mine], nodata, path)
        for (name, _), n in zip(mine, counts, strict=True):
            if n == 0:
                what = "NaN" if nodata is None else f"nodata ({nodata:g}) or NaN"
                raise BadInputError(path, f"band {name} is all {what}: no valid pixel")
            if grids[name].same_as(grid):
                valid = max(valid, n)
    label_files: list[Path] = []
    classes: list[str] = []
    label_json = None
    if spec.label:
        label_files = _check_raster_label(spec.label, grid, base)
        mx = _raster_mask_max(label_files[0]) if spec.label.kind == "raster" else None
        classes = _label_classes(spec.label, label_files, mx)
        label_json = _resolved_label_json(spec.label, label_files, classes, base)
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
        label_sha256=[sha256_file(p) for p in label_files if p.is_file()],
        class_names=classes,
        label_spec=label_json,
        valid_fraction=valid / (grid.height * grid.width),
    )


def _volume_valid(vol: Volume, nodata: float | None) -> int:
    a = vol.array
    ok = ~np.isnan(a) if a.dtype.kind == "f" else np.ones(a.shape, bool)
    if nodata is not None:
        ok &= a != nodata
    return int(ok.all(axis=0).sum())


def inspect_volume_source(
    spec: SourceSpec, base: Path, errors: list[BadInputError]
) -> list[SceneRecord]:
    """Validate a NIfTI or DICOM source and describe each volume."""
    files = _source_files(spec, base)
    check = check_nifti_header if spec.kind == "nifti" else check_dicom_header
    records = []
    for f in files:
        try:
            check(f)
            records.append(_inspect_volume(spec, base, f, len(files)))
        except BadInputError as exc:
            errors.append(exc)
        except Exception as exc:  # a reader's own error still deserves one line, not a crash
            errors.append(_unexpected(f, exc))
    return records


def _inspect_volume(spec: SourceSpec, base: Path, f: Path, n_files: int) -> SceneRecord:
    vol = load_volume(f, spec.kind)
    valid = _volume_valid(vol, spec.nodata)
    if valid == 0:
        what = "NaN" if spec.nodata is None else f"nodata ({spec.nodata:g}) or NaN"
        raise BadInputError(f, f"volume is all {what}: no valid voxel")
    label_files: list[Path] = []
    classes: list[str] = []
    label_json = None
    if spec.label:
        label_files = _label_files(spec.label, base)
        mx = 0
        for lf in label_files:
            lv = load_volume(lf, guess_kind(lf))
            if lv.array.shape[1:] != vol.array.shape[1:] or not np.allclose(
                lv.affine, vol.affine, atol=1e-4
            ):
                raise BadInputError(
                    lf,
                    f"label extent mismatch: shape {lv.array.shape[1:]} "
                    f"affine {np.round(lv.affine, 3).tolist()} differs from "
                    f"image {vol.array.shape[1:]}",
                )
            if spec.label.kind == "raster":
                mx = int(np.nanmax(lv.array))
        classes = _label_classes(spec.label, label_files, mx)
        label_json = _resolved_label_json(spec.label, label_files, classes, base)
    a = vol.affine
    corners = (
        np.array(
            [
                [i, j, k, 1]
                for i in (0, vol.array.shape[1] - 1)
                for j in (0, vol.array.shape[2] - 1)
                for k in (0, vol.array.shape[3] - 1)
            ],
            dtype=np.float64,
        )
        @ a.T
    )
    stem = f.name.split(".")[0]
    sid = spec.name if n_files == 1 else f"{spec.name}/{stem}"
    return SceneRecord(
        scene_id=sid,
        source=spec.name,
        kind=spec.kind,
        files=[display_path(f, base)],
        sha256=[sha256_file(f)],
        band_names=spec.bands or [f"c{i}" for i in range(vol.array.shape[0])]
        if vol.array.shape[0] > 1
        else (spec.bands or ["intensity"]),
        shape=list(vol.array.shape),
        dtype=str(vol.array.dtype),
        affine=a.reshape(-1).tolist(),
        resolution=list(vol.spacing),
        bounds=[*corners[:, :3].min(0), *corners[:, :3].max(0)],
        nodata=spec.nodata,
        label_kind=spec.label.kind if spec.label else None,
        label_files=[display_path(p, base) for p in label_files],
        label_sha256=[sha256_file(p) for p in label_files],
        class_names=classes,
        label_spec=label_json,
        valid_fraction=valid / float(np.prod(vol.array.shape[1:])),
    )


class SourceReport(BaseModel):
    """What inspecting one source found: good records and one-line rejections."""

    source: str
    records: list[SceneRecord] = []
    rejected: list[dict[str, str]] = []


def inspect_source(spec: SourceSpec, base: Path) -> SourceReport:
    """Validate one source; every bad file or scene becomes a rejection, never an exception."""
    errors: list[BadInputError] = []
    try:
        with gdal_env():
            if spec.kind == "geotiff":
                records = inspect_raster_source(spec, base, errors)
            else:
                records = inspect_volume_source(spec, base, errors)
    except BadInputError as exc:
        records, errors = [], [*errors, exc]
    return SourceReport(source=spec.name, records=records, rejected=[e.as_dict() for e in errors])


def write_catalog(records: list[SceneRecord], path: Path) -> None:
    """Write the catalogue atomically as Parquet, one row per scene."""
    df = pd.DataFrame([r.model_dump() for r in records])
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_catalog(path: Path) -> list[SceneRecord]:
    """Read the records back."""
    df = pd.read_parquet(path)
    return [
        SceneRecord.model_validate({k: _plain(v) for k, v in row.items()})
        for row in df.to_dict("records")
    ]


def _plain(v: object) -> object:
    """Parquet cell → plain Python (arrays to lists, NaN to None)."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, float) and np.isnan(v):
        return None
    return v
