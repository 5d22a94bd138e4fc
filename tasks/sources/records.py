"""Catalogue records and the helpers every kind of inspection shares."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from tessera.tasks.sources.paths import as_path, display_path, resolve_paths
from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import LabelSpec, SourceSpec


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
    masked_files: list[str] = []  # files whose alpha band or internal mask says what is valid
    subject: str | None = None  # the subject (a BIDS participant) whose volumes split together

    def label(self) -> LabelSpec | None:
        """The label specification, resolved to the recorded label files."""
        return LabelSpec.model_validate_json(self.label_spec) if self.label_spec else None


RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


def _magic(path: Path) -> str | None:
    """The kind a file's first bytes say: DICOM's ``DICM`` after its 128-byte preamble, or a
    NIfTI (or ANALYZE) header (a ``.hdr`` of a pair)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(544)
    except OSError:
        return None
    if head[128:132] == b"DICM":
        return "dicom"
    if head[344:348] in (b"ni1\0", b"n+1\0") or head[4:8] in (b"ni2\0", b"n+2\0"):
        return "nifti"
    if path.suffix.lower() == ".hdr" and head[:4] in (b"\x5c\x01\0\0", b"\0\0\x01\x5c"):
        return "nifti"  # sizeof_hdr 348 without NIfTI's magic: ANALYZE 7.5, refused by name
    return None


def _volume_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".dcm", ".dicom")):
        return "dicom"
    if path.is_dir():  # a DICOM series, unless it holds rasters
        rasters = any(p.name.lower().endswith(RASTER_SUFFIXES) for p in path.iterdir())
        return None if rasters else "dicom"
    if path.is_file() and not name.endswith(RASTER_SUFFIXES):
        return _magic(path)  # DICOM files often have no suffix at all
    return None


def guess_kind(path: Path) -> str:
    """Source kind from a file name: a STAC Item or Collection (``.json``), NIfTI, DICOM
    (file or directory) or GeoTIFF."""
    if path.name.lower().endswith(".json"):
        return "stac"
    return _volume_kind(path) or "geotiff"


def label_paths(label: LabelSpec, base: Path) -> list[Path]:
    return [base / as_path(p) for p in ([label.path] if label.path else label.paths)]


def label_classes(label: LabelSpec, files: list[Path], grid_values: int | None) -> list[str]:
    if label.classes:
        return label.classes
    if label.kind == "prob_maps":
        return ["background", *[f.name.split(".")[0] for f in files]]
    n = (grid_values or 0) + 1
    return [f"class_{i}" for i in range(n)]


def unexpected(path: Path, exc: Exception) -> BadInputError:
    """An unforeseen reader error, as a one-line rejection of the file."""
    return BadInputError(path, f"could not be read ({type(exc).__name__}: {str(exc)[:120]})")


def source_files(spec: SourceSpec, base: Path) -> list[Path]:
    """The source's image files (its label files excluded); none is an error."""
    files = resolve_paths(spec.paths, spec.glob, base)
    if not files:
        raise BadInputError(base / (spec.glob or ""), f"source {spec.name!r} matches no files")
    if spec.label:
        labels = {p.resolve() for p in label_paths(spec.label, base)}
        files = [f for f in files if f.resolve() not in labels]
    return files


def resolved_label_json(label: LabelSpec, files: list[Path], classes: list[str], base: Path) -> str:
    """The label spec with its class names and file paths as recorded in the catalogue."""
    return label.model_copy(
        update={
            "classes": classes,
            "path": display_path(files[0], base) if label.path else None,
            "paths": [display_path(p, base) for p in files] if label.paths else [],
        }
    ).model_dump_json(by_alias=True)
