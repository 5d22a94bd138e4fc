"""The tile store's on-disk format, defined once.

Layout::

    <store>/store.json      StoreInfo: version, tile parameters, sources, scenes, counts
    <store>/index.parquet   one row per tile (INDEX_COLUMNS, plus GEO_COLUMNS when known)
    <store>/rejected.json   the inputs refused while tiling
    <store>/parts/<part>/   a content-addressed part per scene:
                            part.json and tiles-NNN.{image,valid,label}.npy shards

Labels are uint8 class ids; :data:`IGNORE` marks pixels without a label (fill, nodata,
padding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

STORE_VERSION = 1
INFO_FILE = "store.json"
INDEX_FILE = "index.parquet"
REJECTED_FILE = "rejected.json"  # the inputs ingest (beside the catalogue) or tiling refused
PARTS_DIR = "parts"
PART_FILE = "part.json"
IGNORE = 255  # the label of pixels without one

INDEX_COLUMNS = [
    "tile_id",
    "scene_id",
    "source",
    "split",
    "shard",
    "shard_row",
    "row_off",
    "col_off",
    "slice",
    "valid_fraction",
    "has_label",
    "label_fractions",
]
GEO_COLUMNS = ("crs", "transform", "affine")  # a raster tile's CRS and transform, a slice's affine


def shard_stem(part_dir: Path, prefix: str, k: int) -> Path:
    """The path of a part's k-th shard without its ``.image.npy`` / ``.valid.npy`` /
    ``.label.npy`` ending."""
    return part_dir / f"{prefix}-{k:03d}"


def image_file(stem: Path | str) -> Path:
    """The shard of tile images, (N, C, H, W) in the source dtype."""
    return Path(f"{stem}.image.npy")


def valid_file(stem: Path | str) -> Path:
    """The shard of validity masks, (N, H, W) bool."""
    return Path(f"{stem}.valid.npy")


def label_file(stem: Path | str) -> Path:
    """The shard of labels, (N, H, W) uint8 with :data:`IGNORE` for unlabelled pixels."""
    return Path(f"{stem}.label.npy")


def stem_of(image: Path | str) -> str:
    """The stem of an image shard's path (what :func:`image_file` was given)."""
    return str(image).removesuffix(".image.npy")


class StoreParams(BaseModel):
    """The tile parameters a store was cut with (the rest of ``TileParams`` is kept as is)."""

    model_config = ConfigDict(extra="allow")
    size: int = Field(description="Tile edge in pixels.")
    stride: int = Field(description="Step between tiles in pixels.")
    axis: int = Field(default=2, description="Volume slicing axis.")


class SourceInfo(BaseModel):
    """One source of a store: its bands, dtype, classes, scenes and per-band statistics."""

    model_config = ConfigDict(extra="allow")
    kind: str
    bands: list[str]
    dtype: str | None = None
    class_names: list[str] = Field(default_factory=list)
    nodata: float | None = None
    scenes: list[str] = Field(default_factory=list)
    stats: dict[str, dict[str, int | float]] = Field(
        default_factory=dict, description="Per band: count (int), mean, std, min, max, p2, p98."
    )


class StoreInfo(BaseModel):
    """``store.json``: what the store holds and how it was made."""

    model_config = ConfigDict(extra="allow")
    version: int = STORE_VERSION
    n_tiles: int = 0
    params: StoreParams
    sources: dict[str, SourceInfo]
    scenes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)

    @classmethod
    def read(cls, root: Path) -> StoreInfo:
        """The ``store.json`` of the store at ``root``."""
        return cls.model_validate(json.loads((root / INFO_FILE).read_text()))

    def to_json(self) -> dict[str, Any]:
        """The JSON object written as ``store.json`` (NaN nodata kept as NaN)."""
        return self.model_dump()
