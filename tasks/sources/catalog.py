"""The catalogue: one validated record per scene or volume, written as Parquet."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from tessera.tasks.base.files import atomic_write_bytes, atomic_write_json
from tessera.tasks.sources.inspect_raster import inspect_raster_source
from tessera.tasks.sources.inspect_volume import inspect_volume_source
from tessera.tasks.sources.raster import gdal_env
from tessera.tasks.sources.records import SceneRecord, guess_kind
from tessera.tasks.sources.refusals import BadInputError
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.store.format import REJECTED_FILE

__all__ = [
    "SceneRecord",
    "SourceReport",
    "guess_kind",
    "inspect_source",
    "read_catalog",
    "write_catalog",
]


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
            if spec.kind in ("geotiff", "stac"):
                records = inspect_raster_source(spec, base, errors)
            else:
                records = inspect_volume_source(spec, base, errors)
    except BadInputError as exc:
        records, errors = [], [*errors, exc]
    return SourceReport(source=spec.name, records=records, rejected=[e.as_dict() for e in errors])


# record fields added after catalogues were first written: left out while no record has one,
# so that the catalogue of the same inputs stays the same file (DVC sees no change)
LATER_COLUMNS = ("subject",)


def write_catalog(
    records: list[SceneRecord], path: Path, rejected: list[dict[str, str]] | None = None
) -> None:
    """Write the catalogue atomically as Parquet, one row per scene, and the rejected inputs
    beside it (when given)."""
    df = pd.DataFrame([r.model_dump() for r in records])
    empty = [c for c in LATER_COLUMNS if c in df and df[c].isna().all()]
    df = df.drop(columns=empty)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
    if rejected is not None:
        atomic_write_json(path.parent / REJECTED_FILE, rejected)


def load_catalog(base: Path, catalog: str) -> tuple[list[SceneRecord], list[dict[str, str]]]:
    """The records of ``base/catalog`` and the inputs ingest rejected beside it."""
    path = base / catalog
    if not path.exists():
        raise ValueError(f"{catalog}: no catalogue; run `tessera ingest` first")
    rej = path.parent / REJECTED_FILE
    return read_catalog(path), json.loads(rej.read_text()) if rej.exists() else []


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
