"""``tessera tile``: the catalogue (or files given on the command line) into a tile store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from tqdm import tqdm

from flows.config import IngestParams, TileStageParams
from flows.failures import failing_in_one_line
from flows.ingest import failed_on, inspect_all, rejected_markdown
from tasks.prefect_tasks import tile_scene_task
from tasks.sources.catalog import SceneRecord, read_catalog
from tasks.sources.specs import SourceSpec
from tasks.store.errors import StepError
from tasks.store.format import StoreInfo
from tasks.store.stats import source_stats
from tasks.store.writer import check_store_output, discard_staging, finish_store, store_writer
from tasks.tiling.cut import plan_splits


def store_info(
    records: list[SceneRecord], parts: list[dict[str, Any]], params: TileStageParams
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
    counts = {p["scene_id"]: p["counts"] for p in parts}
    return StoreInfo.model_validate(
        {
            "params": params.geometry().model_dump(),
            "sources": sources,
            "scenes": scenes,
            "counts": counts,
        }
    )


def empty_store_reason(out: Path, info: StoreInfo, params: TileStageParams) -> str:
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


def tile_markdown(info: StoreInfo, n_tiles: int, rejected: list[dict[str, str]]) -> str:
    """Markdown summary of a store."""
    lines = [
        "# Tessera tile store",
        "",
        f"{n_tiles} tiles; {len(rejected)} inputs rejected.",
        "",
        "| scene | grid tiles | kept | dropped (border) | dropped (invalid) |",
        "|---|---|---|---|---|",
    ]
    for sid, c in info.counts.items():
        lines.append(
            f"| {sid} | {c['total']} | {c['kept']} | {c['dropped_border']} | "
            f"{c['dropped_invalid']} |"
        )
    lines += [
        "",
        "| source | band | mean | std | min | max | p2 | p98 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for src, s in info.sources.items():
        for band, st in s.stats.items():
            lines.append(
                f"| {src} | {band} | {st['mean']:.4g} | {st['std']:.4g} | "
                f"{st['min']:.4g} | {st['max']:.4g} | {st['p2']:.4g} | {st['p98']:.4g} |"
            )
    return "\n".join(lines + rejected_markdown(rejected))


@flow(name="tessera-tile", log_prints=True)
@failing_in_one_line
def tile_flow(
    params: TileStageParams, sources: list[SourceSpec] | None = None, base: str = "."
) -> State[Any]:
    """Tile every scene (mapped tasks), then publish the store atomically."""
    root = Path(base)
    given = [root / f for s in sources or [] for f in s.paths]
    out = check_store_output(root / params.out, given)  # before any work
    if sources:
        records, rejected = inspect_all(
            IngestParams(sources=sources, on_bad_input=params.on_bad_input), root
        )
    else:
        catalog = root / params.catalog
        if not catalog.exists():
            return Failed(message=f"{params.catalog}: no catalogue; run `tessera ingest` first")
        records = read_catalog(catalog)
        rej = catalog.parent / "rejected.json"
        rejected = json.loads(rej.read_text()) if rej.exists() else []
    if rejected and params.on_bad_input == "fail":
        return failed_on(rejected)
    if not records:
        return Failed(message=f"{params.out}: no valid input to tile")
    check_store_output(out, [root / f for r in records for f in r.files + r.label_files])
    plan = plan_splits(records, params.split)
    geometry = params.geometry()
    with store_writer(out) as tmp:
        futures = tile_scene_task.map(
            records,
            unmapped(geometry),
            [plan[r.scene_id] for r in records],
            unmapped(tmp / "parts"),
            unmapped(root),
            unmapped([out / "parts"]),
            unmapped(len(records) == 1),
        )
        parts, kept = [], []
        for rec, fut in zip(
            records,
            tqdm(futures, desc="tile", unit="scene", leave=False, disable=None),
            strict=True,
        ):
            part = fut.result()
            if isinstance(part, StepError):
                return Failed(message=part.message)
            if "rejected" in part:
                rejected.append(part["rejected"])
                continue
            parts.append(part)
            kept.append(rec)
        if rejected and params.on_bad_input == "fail":
            return failed_on(rejected)
        info = store_info(kept, parts, params)
        if not any(p["rows"] for p in parts):  # refuse to publish an empty store
            discard_staging(tmp)
            return Failed(message=empty_store_reason(out, info, params))
        finish_store(out, tmp, parts, info, rejected)
    n_tiles = sum(len(p["rows"]) for p in parts)
    create_markdown_artifact(
        tile_markdown(info, n_tiles, rejected),
        key="tessera-tile",
        description="Tile store written by tessera tile",
    )
    return Completed(
        data={"tiles": n_tiles, "scenes": len(parts), "rejected": rejected, "store": str(out)}
    )
