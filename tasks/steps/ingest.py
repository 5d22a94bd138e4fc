"""The steps of ``tessera ingest`` (and of ``tessera tile --input``): inspect, write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import unmapped
from prefect.states import Failed, State

from tessera.tasks.sources.cache_key import source_cache_key
from tessera.tasks.sources.catalog import SceneRecord, inspect_source, write_catalog
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.steps import Step

# ingest and tile: inspections are cached across runs by code, parameters and file content
inspect_source_step = Step(
    inspect_source,
    "inspect-source",
    errors_as_values=False,
    retries=2,
    retry_delay_seconds=1,
    cache_key_fn=source_cache_key,
    persist_result=True,
)
write_catalog_step = Step(write_catalog, "write-catalog")


def inspect_sources(
    sources: list[SourceSpec], base: Path
) -> tuple[list[SceneRecord], list[dict[str, str]]]:
    """Inspect every source in parallel (mapped tasks) with a progress bar: the scenes found,
    and the inputs refused (path and reason)."""
    reports = inspect_source_step.map(sources, unmapped(base), desc="inspect", unit="source")
    records = [r for rep in reports for r in rep.records]
    rejected = [x for rep in reports for x in rep.rejected]
    return records, rejected


def failed_on(rejected: list[dict[str, str]]) -> State[Any]:
    """A Failed state whose message is one line per rejected input."""
    return Failed(
        message="\n".join(f"{x['path']}: {x['reason']}" for x in rejected),
        data={"rejected": rejected},
    )
