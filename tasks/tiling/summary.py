"""The store's description (``store.json``) and why a store came out empty, from the scenes
and the parts the cut produced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.tasks.sources.catalog import SceneRecord
from tessera.tasks.store.format import StoreInfo
from tessera.tasks.store.stats import source_stats
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
    counts: dict[str, dict[str, int]] = {}
    for p in parts:  # a scene cut in bands of rows has a part per band
        total = counts.setdefault(p["scene_id"], dict.fromkeys(p["counts"], 0))
        for k, v in p["counts"].items():
            total[k] += v
    return StoreInfo.model_validate(
        {
            "params": params.model_dump(),
            "sources": sources,
            "scenes": scenes,
            "counts": counts,
        }
    )


def empty_store_reason(out: Path, info: StoreInfo, params: TileParams) -> str:
    """Why a store holds no tile, in one line per scene."""
    lines = []
    for sid, c in info.counts.items():
        shape = info.scenes[sid]["shape"]
        if c["dropped_border"] == c["total"]:
            why = (
                f"all {c['total']} tiles straddle split blocks (tile.split.block_size "
                f"{params.split.block_size}); use a larger block or a smaller --size"
            )
        else:
            why = (
                f"no tile of {params.size}x{params.size} has {params.min_valid_fraction:.0%} "
                f"valid pixels (image {'x'.join(map(str, shape))}, nodata "
                f"{info.scenes[sid]['nodata']}); lower --min-valid-fraction or --size"
            )
        lines.append(f"{out}: 0 tiles from {sid}: {why}")
    return "\n".join(lines) or f"{out}: 0 tiles"
