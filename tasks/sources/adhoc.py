"""Sources for ``tessera tile --input``: any file a user points at, no config needed."""

from __future__ import annotations

import re
from pathlib import Path

from tessera.tasks.sources.catalog import guess_kind
from tessera.tasks.sources.paths import natural_key
from tessera.tasks.sources.records import RASTER_SUFFIXES
from tessera.tasks.sources.specs import LabelSpec, SourceSpec


def _name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name.split(".")[0]) or "input"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _label_spec(label: Path) -> LabelSpec:
    if label.name.lower().endswith((".geojson", ".json")):
        raise ValueError(f"{label}: vector labels need class names; declare them in params.yaml")
    return LabelSpec(kind="raster", path=str(label.resolve()))


def adhoc_sources(inputs: list[Path], label: Path | None, stack: bool) -> list[SourceSpec]:
    """One source per input (or one band stack with ``stack``), absolute paths."""
    if label and len(inputs) > 1 and not stack:
        raise ValueError("--label goes with a single --input (or --stack)")
    taken: set[str] = set()
    lab = _label_spec(label) if label else None
    if stack:
        kinds = {guess_kind(p) for p in inputs}
        if kinds != {"geotiff"}:
            raise ValueError("--stack combines GeoTIFF bands only")
        bands = [p.name for p in inputs]
        if len(set(bands)) != len(bands):
            raise ValueError("--stack needs inputs with distinct file names (they name the bands)")
        return [
            SourceSpec(
                name=_name(inputs[0], taken),
                kind="geotiff",
                paths=[str(p.resolve()) for p in inputs],
                label=lab,
                band_regex=r"^(?P<band>.+)$",
                bands=bands,
            )
        ]
    return [
        SourceSpec(
            name=_name(p, taken),
            kind=guess_kind(p),  # type: ignore[arg-type]
            paths=[str(f.resolve()) for f in _files_of(p)],
            label=lab,
        )
        for p in inputs
    ]


def _files_of(path: Path) -> list[Path]:
    """A folder of rasters is its raster files (each a scene); anything else is itself."""
    if path.is_dir() and guess_kind(path) == "geotiff":
        return sorted(
            (f for f in path.iterdir() if f.name.lower().endswith(RASTER_SUFFIXES)),
            key=lambda f: natural_key(f.name),
        )
    return [path]
