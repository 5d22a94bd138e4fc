"""``tessera ingest``: validate every source, then write the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from tessera.flows.config import IngestParams
from tessera.flows.failures import failing_in_one_line
from tessera.flows.markdown import ingest_markdown
from tessera.tasks.sources.catalog import SceneRecord
from tessera.tasks.steps.ingest import inspect_source_step, write_catalog_step


def inspect_all(params: IngestParams, base: Path) -> tuple[list[SceneRecord], list[dict[str, str]]]:
    """Inspect every source in parallel (mapped tasks) with a progress bar."""
    reports = inspect_source_step.map(params.sources, unmapped(base), desc="inspect", unit="source")
    records = [r for rep in reports for r in rep.records]
    rejected = [x for rep in reports for x in rep.rejected]
    return records, rejected


def failed_on(rejected: list[dict[str, str]]) -> State[Any]:
    """A Failed state whose message is one line per rejected input."""
    return Failed(
        message="\n".join(f"{x['path']}: {x['reason']}" for x in rejected),
        data={"rejected": rejected},
    )


@flow(name="tessera-ingest", log_prints=True)
@failing_in_one_line
def ingest_flow(params: IngestParams, base: str = ".") -> State[Any]:
    """Validate all sources before writing anything; then write the catalogue (and rejects)."""
    root = Path(base)
    records, rejected = inspect_all(params, root)
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
