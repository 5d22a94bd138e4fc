"""``tessera tile``: the catalogue (or files given on the command line) into a tile store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import tile_markdown
from tessera.flows.settings.schema import IngestParams, TileStageParams
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.steps.ingest import failed_on, inspect_sources
from tessera.tasks.steps.tile import load_catalog_step, publish_store_step, tile_scene_step
from tessera.tasks.store.format import PARTS_DIR
from tessera.tasks.store.writer import check_store_output, discard_staging, store_writer
from tessera.tasks.tiling.cut import PartFolders, plan_splits, row_bands
from tessera.tasks.tiling.publication import empty_store_reason


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
        records, rejected = inspect_sources(
            IngestParams(sources=sources, on_bad_input=params.on_bad_input).sources, root
        )
    else:
        records, rejected = load_catalog_step(root, params.catalog)
    if rejected and params.on_bad_input == "fail":
        return failed_on(rejected)
    if not records:
        return Failed(message=f"{params.out}: no valid input to tile")
    check_store_output(out, [root / f for r in records for f in r.files + r.label_files])
    plan = plan_splits(records, params.split)
    geometry = params.geometry()
    # a task per scene, or per band of rows of a big one (several workers share it)
    units = [(rec, band) for rec in records for band in row_bands(rec, geometry)]
    with store_writer(out) as tmp:
        results = tile_scene_step.map(
            [rec for rec, _ in units],
            unmapped(geometry),
            [plan[rec.scene_id] for rec, _ in units],
            unmapped(PartFolders(tmp / PARTS_DIR, (out / PARTS_DIR,))),
            unmapped(root),
            unmapped(len(units) == 1),
            [band for _, band in units],
            desc="tile",
            unit="part",
        )
        parts, kept = [], []
        for rec in records:
            mine = [part for (r, _), part in zip(units, results, strict=True) if r is rec]
            refused = next((part["rejected"] for part in mine if "rejected" in part), None)
            if refused is not None:
                rejected.append(refused)
                continue
            parts += mine
            kept.append(rec)
        if rejected and params.on_bad_input == "fail":
            return failed_on(rejected)
        if not any(p["tiles"] for p in parts):  # refuse to publish an empty store
            discard_staging(tmp)
            return Failed(message=empty_store_reason(out, kept, parts, geometry))
        # the tasks hand back part names and counts; the rows are read back from disk
        names = [p["name"] for p in parts]
        info = publish_store_step(out, tmp, kept, names, geometry, rejected)
    n_tiles = info.n_tiles
    create_markdown_artifact(
        tile_markdown(info, n_tiles, rejected),
        key="tessera-tile",
        description="Tile store written by tessera tile",
    )
    return Completed(
        data={"tiles": n_tiles, "scenes": len(parts), "rejected": rejected, "store": str(out)}
    )
