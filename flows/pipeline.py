"""``tessera run``: the whole pipeline as one Prefect flow, kept in step with DVC.

Design: DVC decides what is current. The flow walks the ``dvc.yaml`` stages in dependency
order; for each it asks DVC whether the stage is out of date, runs the stage's own flow as a
subflow only if it is (or if forced), then commits the stage to ``dvc.lock``. A run on
unchanged data and params therefore does no work and registers nothing, ``dvc status`` is
clean after every run, and a rerun after a crash continues from the last committed stage.
"""

# no `from __future__ import annotations`: a deployment loads this file by path, and Prefect
# must resolve the flow's parameter model from real (not string) annotations
import os
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import artifact_key
from tessera.flows.settings.schema import PARAMS_FILE, validated_params
from tessera.flows.stages import parse_stage_command, stage_call
from tessera.tasks.pipeline.dvc_stages import Stage, pipeline_lock
from tessera.tasks.steps import StepFailed, failing_as, read_params_step
from tessera.tasks.steps.pipeline import (
    commit_stage_step,
    default_remote_step,
    pipeline_stages_step,
    push_outputs_step,
    run_summary_step,
    stage_changed_step,
)

# DVC tracks params.yaml: the pipeline reads the same file, so both agree on what is current


class PipelineParams(BaseModel):
    """Where the project lives and what to force. The data sources are ``ingest.sources`` in
    the checkout's ``params.yaml``, versioned with the code."""

    root: str = Field(default=".", description="The project checkout (a git + DVC repo).")
    force: list[str] = Field(
        default_factory=list,
        description="Stage names or prefixes to run even when current (e.g. train).",
    )
    push: bool = Field(default=True, description="dvc push when a default remote is set.")


def _forced(name: str, force: list[str]) -> bool:
    return any(name == f or name.split("@")[0] == f for f in force)


@flow(name="tessera-pipeline")
@failing_in_one_line
def pipeline_flow(params: PipelineParams) -> State[Any]:
    """Run the out-of-date ``dvc.yaml`` stages as subflows, committing each to ``dvc.lock``.

    One run at a time per project: a second is refused in one line.
    """
    root = Path(params.root).resolve()
    with pipeline_lock(root):
        return _run_stages(params, root)


def _run_stages(params: PipelineParams, root: Path) -> State[Any]:
    os.chdir(root)  # every stage reads and writes paths relative to the project
    p = validated_params(read_params_step(root / PARAMS_FILE))
    ran: list[str] = []
    skipped: list[str] = []
    for stage in pipeline_stages_step(root):
        assert isinstance(stage, Stage)
        if not stage_changed_step(root, stage.name) and not _forced(stage.name, params.force):
            skipped.append(stage.name)
            continue
        try:
            name, options = parse_stage_command(stage.argv)
            subflow, kwargs = stage_call(name, p, options)
        except ValueError as exc:
            return Failed(message=f"{stage.name}: {exc}")
        state = subflow(**kwargs, return_state=True)
        if state.is_failed():
            return Failed(message=f"{stage.name}: {state.message or 'failed'}")
        with failing_as(f"{stage.name}: "):
            commit_stage_step(root, stage.name)
        ran.append(stage.name)
    pushed = None
    if params.push and ran and isinstance(_remote(root), str):
        with failing_as("dvc push: "):
            pushed = push_outputs_step(root)
    with failing_as("summary: "):
        summary = run_summary_step(
            root, p.evaluate.out, p.registry.out, sorted(p.experiments), ran, skipped, pushed
        )
    create_markdown_artifact(summary, key=artifact_key("tessera", "pipeline"))
    return Completed(data={"ran": ran, "skipped": skipped, "pushed": pushed, "summary": summary})


def _remote(root: Path) -> str | None:
    """The default DVC remote; one DVC cannot read is no remote (nothing is pushed)."""
    try:
        return default_remote_step(root)
    except StepFailed:
        return None
