"""``tessera ingest``: validate every source, then write the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import ingest_markdown
from tessera.flows.settings.schema import IngestParams
from tessera.tasks.steps.ingest import failed_on, inspect_sources, write_catalog_step


@flow(name="tessera-ingest", log_prints=True)
@failing_in_one_line
def ingest_flow(params: IngestParams, base: str = ".") -> State[Any]:
    """Validate all sources before writing anything; then write the catalogue (and rejects)."""
    root = Path(base)
    records, rejected = inspect_sources(params.sources, root)
    if rejected and params.on_bad_input == "fail":
        return failed_on(rejected)
    catalog = root / params.catalog
    write_catalog_step(records, catalog, rejected)
    create_markdown_artifact(
        ingest_markdown(records, rejected),
        key="tessera-ingest",
        description="Catalogue written by tessera ingest",
    )
    return Completed(data={"scenes": len(records), "rejected": rejected, "catalog": str(catalog)})
