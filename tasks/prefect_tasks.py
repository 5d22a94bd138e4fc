"""Prefect task wrappers over the plain functions; only flows import this module."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from tasks.sources.catalog import SceneRecord, inspect_source, write_catalog
from tasks.sources.errors import BadInputError
from tasks.sources.paths import resolve_paths, sha256_file
from tasks.store.errors import returning_errors
from tasks.tiling.cut import tile_scene
from tasks.tiling.params import TileParams
from tasks.training.launch import launch_training, write_run_config

_SOURCES = Path(__file__).parent / "sources"
_INSPECTION_CODE = ("catalog", "inspect_raster", "inspect_volume", "raster", "records", "volume")


@functools.cache
def _inspection_code_hash() -> str:
    """Hash of the code behind an inspection: a new Tessera never reuses an old answer."""
    h = hashlib.sha256()
    for name in _INSPECTION_CODE:
        h.update((_SOURCES / f"{name}.py").read_bytes())
    return h.hexdigest()


def source_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of an inspection: the code, the source's parameters and its files' content."""
    spec, base = parameters["spec"], Path(parameters["base"])
    h = hashlib.sha256(_inspection_code_hash().encode())
    h.update(spec.model_dump_json().encode())
    h.update(str(base.resolve()).encode())
    paths = resolve_paths(spec.paths, spec.glob, base)
    if spec.label:
        paths += [base / p for p in ([spec.label.path] if spec.label.path else spec.label.paths)]
    for p in paths:
        h.update(str(p).encode())
        h.update(sha256_file(p).encode() if p.exists() else b"missing")
    return f"inspect-{h.hexdigest()}"


inspect_source_task = task(
    name="inspect-source",
    retries=2,
    retry_delay_seconds=1,
    cache_key_fn=source_cache_key,
    persist_result=True,
)(inspect_source)
write_catalog_task = task(name="write-catalog")(returning_errors(write_catalog))


def tile_scene_or_reject(
    rec: SceneRecord,
    tile: TileParams,
    assignment: dict[str, Any],
    parts_dir: Path,
    base: Path,
    reuse: list[Path] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`tile_scene`, with a refused input returned as ``{"rejected": ...}``.

    A refused input is an answer, not a task failure: it is neither retried nor logged with a
    traceback; the flow decides (fail or skip).
    """
    try:
        return tile_scene(rec, tile, assignment, parts_dir, base, reuse, progress)
    except BadInputError as exc:
        return {"rejected": exc.as_dict()}


# errors come back as values: a full disk or a read-only output is reported in one line by
# the flow, not retried and logged with a traceback by Prefect
tile_scene_task = task(name="tile-scene")(returning_errors(tile_scene_or_reject))


write_run_config_task = task(name="write-run-config")(returning_errors(write_run_config))
# no retries: a failed training run is reported, not silently repeated
launch_training_task = task(name="launch-training")(returning_errors(launch_training))
