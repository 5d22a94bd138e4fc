"""The store's description (``store.json``), why a store came out empty, and its publication,
from the scenes and the parts the cut wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.tasks.sources.catalog import SceneRecord
from tessera.tasks.store.format import PARTS_DIR, StoreInfo
from tessera.tasks.store.stats import source_stats
from tessera.tasks.store.writer import finish_store
from tessera.tasks.tiling.cut import read_part
from tessera.tasks.tiling.params import TileParams


def store_info(
    records: list[SceneRecord], parts: list[dict[str, Any]], params: TileParams
) -> StoreInfo:
    """``store.json`` content: parameters, sources with classes and statistics, scenes."""
    bands = {r.source: r.band_names for r in records}
    sources: dict[str, dict[str, Any]] = {}
    for r in records:
        sources.setdefault(
            r.source,
            {
                "kind": r.kind,
                "bands": r.band_names,
                "dtype": r.dtype,
                "class_names": r.class_names,
                "nodata": r.nodata,
                "scenes": [],
            },
        )["scenes"].append(r.scene_id)
    stats = source_stats(parts, bands)
    for name, s in sources.items():
        s["stats"] = stats.get(name, {})
    scenes = {
        r.scene_id: r.model_dump(
            include={
                "source",
                "kind",
                "files",
                "sha256",
                "shape",
                "dtype",
                "crs_wkt",
                "transform",
                "affine",
                "resolution",
                "bounds",
                "nodata",
                "class_names",
            }
        )
        for r in records
    }
    return StoreInfo.model_validate(
        {
            "params": params.model_dump(),
            "sources": sources,
            "scenes": scenes,
            "counts": scene_counts(parts),
        }
    )


def scene_counts(parts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Tile counts per scene (a scene cut in bands of rows has a part per band)."""
    counts: dict[str, dict[str, int]] = {}
    for p in parts:
        total = counts.setdefault(p["scene_id"], dict.fromkeys(p["counts"], 0))
        for k, v in p["counts"].items():
            total[k] += v
    return counts


def empty_store_reason(
    out: Path, records: list[SceneRecord], parts: list[dict[str, Any]], params: TileParams
) -> str:
    """Why a store holds no tile, in one line per scene (``parts``: their counts)."""
    lines = []
    scenes = {r.scene_id: r for r in records}
    for sid, c in scene_counts(parts).items():
        shape = scenes[sid].shape
        if c["dropped_border"] == c["total"]:
            why = (
                f"all {c['total']} tiles straddle split blocks (tile.split.block_size "
                f"{params.split.block_size}); use a larger block or a smaller --size"
            )
        else:
            why = (
                f"no tile of {params.size}x{params.size} has {params.min_valid_fraction:.0%} "
                f"valid pixels (image {'x'.join(map(str, shape))}, nodata "
                f"{scenes[sid].nodata}); lower --min-valid-fraction or --size"
            )
        lines.append(f"{out}: 0 tiles from {sid}: {why}")
    return "\n".join(lines) or f"{out}: 0 tiles"


def publish_store(
    out: Path,
    tmp: Path,
    records: list[SceneRecord],
    names: list[str],
    params: TileParams,
    rejected: list[Any],
) -> StoreInfo:
    """Publish the store staged in ``tmp`` from its parts ``names``: their index rows and
    statistics are read from the ``part.json`` files the tiling tasks wrote, not passed
    through the orchestrator. Returns the ``store.json`` written."""
    parts = [read_part(tmp / PARTS_DIR, n) for n in names]
    return finish_store(out, tmp, parts, store_info(records, parts, params), rejected)
