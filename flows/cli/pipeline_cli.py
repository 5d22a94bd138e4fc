"""``tessera run`` and ``tessera serve``: the whole pipeline, now or on a schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tessera.flows.cli.common import load, run_flow

ForceOpt = Annotated[
    list[str] | None,
    typer.Option("--force", help="Run these stages (name or prefix, e.g. train) even if current."),
]


def run_pipeline(
    force: ForceOpt = None,
    push: Annotated[bool, typer.Option(help="dvc push to the default remote.")] = True,
) -> None:
    """Run every out-of-date dvc.yaml stage as a Prefect subflow and commit it to dvc.lock.

    It reads params.yaml, as DVC does (no --set: the outputs must match what DVC records).
    """
    from tessera.flows.pipeline import PARAMS_FILE, PipelineParams, pipeline_flow

    p = load(Path(PARAMS_FILE), None)  # a bad params.yaml fails here, in one line
    fp = PipelineParams(root=".", force=list(force or []), push=push)
    from tessera.flows.settings.runner import make_task_runner

    f = pipeline_flow.with_options(task_runner=make_task_runner(p.runner))
    typer.echo(run_flow(f, params=fp)["summary"])


def serve(
    cron: Annotated[str, typer.Option(help="Schedule (cron, in --timezone).")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the schedule.")] = "UTC",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "tessera-serve",
    force: ForceOpt = None,
) -> None:
    """Serve the pipeline flow on a schedule from this process (no work pool needed)."""
    from prefect.schedules import Cron

    from tessera.flows.pipeline import PipelineParams, pipeline_flow

    fp = PipelineParams(root=str(Path.cwd()), force=list(force or []))
    from tessera.flows.local_server.api import prefect_api

    with prefect_api():
        typer.echo(f"serving tessera-pipeline/{name}: cron {cron!r} ({timezone}); Ctrl-C stops")
        pipeline_flow.serve(
            name=name,
            schedule=Cron(cron, timezone=timezone),
            parameters={"params": fp.model_dump()},
        )
