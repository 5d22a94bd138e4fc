"""The steps of ``tessera ingest`` (and of ``tessera tile --input``): inspect, write."""

from __future__ import annotations

from tessera.tasks.sources.cache_key import source_cache_key
from tessera.tasks.sources.catalog import inspect_source, write_catalog
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
