"""``tessera ingest``: validate every source, then write the catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from tqdm import tqdm

from flows.config import IngestParams
from flows.failures import failing_in_one_line
from tasks.prefect_tasks import inspect_source_task, write_catalog_task
from tasks.sources.catalog import SceneRecord, SourceReport
from tasks.store.errors import StepError
from tasks.store.files import atomic_write_json


def inspect_all(params: IngestParams, base: Path) -> tuple[list[SceneRecord], list[dict[str, str]]]:
    """Inspect every source in parallel (mapped tasks) with a progress bar."""
    futures = inspect_source_task.map(params.sources, unmapped(base))
    reports: list[SourceReport] = [
        f.result() for f in tqdm(futures, desc="inspect", unit="source", leave=False, disable=None)
    ]
    records = [r for rep in reports for r in rep.records]
    rejected = [x for rep in reports for x in rep.rejected]
    return records, rejected


def ingest_markdown(records: list[SceneRecord], rejected: list[dict[str, str]]) -> str:
    """Markdown summary of a catalogue."""
    lines = [
        "# Tessera ingest",
        "",
        f"{len(records)} scenes, {len(rejected)} rejected.",
        "",
        "| scene | kind | shape | dtype | bands | resampled | label | valid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r.scene_id} | {r.kind} | {'×'.join(map(str, r.shape))} | {r.dtype} | "
            f"{len(r.band_names)} | {', '.join(r.resampled_bands) or '-'} | "
            f"{r.label_kind or '-'} | {r.valid_fraction:.1%} |"
        )
    return "\n".join(lines + rejected_markdown(rejected))


def rejected_markdown(rejected: list[dict[str, str]]) -> list[str]:
    """Markdown lines listing rejected inputs (none when there are none)."""
    if not rejected:
        return []
    return ["", "## Rejected", ""] + [f"- `{x['path']}`: {x['reason']}" for x in rejected]


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
    written = write_catalog_task(records, catalog)
    if isinstance(written, StepError):
        return Failed(message=written.message)
    atomic_write_json(catalog.parent / "rejected.json", rejected)
    create_markdown_artifact(
        ingest_markdown(records, rejected),
        key="tessera-ingest",
        description="Catalogue written by tessera ingest",
    )
    return Completed(data={"scenes": len(records), "rejected": rejected, "catalog": str(catalog)})
