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

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from flows.config import TesseraParams, load_params
from flows.failures import failing_in_one_line
from flows.train import artifact_key
from tasks.pipeline.dvc_stages import (
    Stage,
    commit_stage,
    default_remote,
    pipeline_lock,
    pipeline_stages,
    push_outputs,
    stage_changed,
)
from tasks.pipeline.report import run_summary
from tasks.store.errors import StepError, returning_errors

load_params_task = task(name="load-params", cache_policy=NONE)(returning_errors(load_params))
run_summary_task = task(name="run-summary", cache_policy=NONE)(returning_errors(run_summary))
# DVC reads and writes files: retry them; a stage itself is never retried blindly
pipeline_stages_task = task(name="dvc-stages", retries=2, retry_delay_seconds=2)(
    returning_errors(pipeline_stages)
)
stage_changed_task = task(name="dvc-status", retries=2, retry_delay_seconds=2)(
    returning_errors(stage_changed)
)
commit_stage_task = task(name="dvc-commit", retries=2, retry_delay_seconds=2)(
    returning_errors(commit_stage)
)
default_remote_task = task(name="dvc-remote", cache_policy=NONE)(returning_errors(default_remote))
push_outputs_task = task(name="dvc-push", retries=3, retry_delay_seconds=[2, 10, 30])(
    returning_errors(push_outputs)
)


# DVC tracks params.yaml: the pipeline reads the same file, so both agree on what is current
PARAMS_FILE = "params.yaml"


class PipelineParams(BaseModel):
    """Where the project lives and what to force. The data sources are ``ingest.sources`` in
    the checkout's ``params.yaml``, versioned with the code."""

    root: str = Field(default=".", description="The project checkout (a git + DVC repo).")
    force: list[str] = Field(
        default_factory=list,
        description="Stage names or prefixes to run even when current (e.g. train).",
    )
    push: bool = Field(default=True, description="dvc push when a default remote is set.")


def _stage_call(argv: list[str], p: TesseraParams) -> tuple[Any, dict[str, Any]]:
    """The flow and its arguments behind a ``tessera <stage> …`` command of ``dvc.yaml``."""
    from flows.evaluate import evaluate_flow, resolve_evaluation
    from flows.ingest import ingest_flow
    from flows.register import register_flow, resolve_registration
    from flows.runner import make_task_runner
    from flows.tile import tile_flow
    from flows.train import resolve_experiment, train_flow
    from tasks.registry.mlflow_registry import configure_http_retries

    if argv[:1] != ["tessera"] or len(argv) < 2:
        raise ValueError(f"not a tessera stage command: {' '.join(argv)}")
    cmd, opts = argv[1], dict(zip(argv[2::2], argv[3::2], strict=False))
    runner = {"task_runner": make_task_runner(p.runner)}
    if cmd == "ingest":
        return ingest_flow.with_options(**runner), {"params": p.ingest}
    if cmd == "tile":
        return tile_flow.with_options(**runner), {"params": p.tile, "sources": None, "base": "."}
    name = opts.get("--experiment")
    if cmd == "train" and name:
        return train_flow, {"params": resolve_experiment(p, name)}
    if cmd == "evaluate" and name:
        return evaluate_flow, {"params": resolve_evaluation(p, name)}
    if cmd == "register":
        configure_http_retries(p.registry.retries, p.registry.backoff_s)
        return register_flow, {"params": resolve_registration(p, [name] if name else None)}
    raise ValueError(f"no flow for the stage command: {' '.join(argv)}")


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
    p = load_params_task(root / PARAMS_FILE)
    if isinstance(p, StepError):
        return Failed(message=p.message)
    stages = pipeline_stages_task(root)
    if isinstance(stages, StepError):
        return Failed(message=stages.message)
    ran: list[str] = []
    skipped: list[str] = []
    for stage in stages:
        assert isinstance(stage, Stage)
        changed = stage_changed_task(root, stage.name)
        if isinstance(changed, StepError):
            return Failed(message=changed.message)
        if not changed and not _forced(stage.name, params.force):
            skipped.append(stage.name)
            continue
        try:
            subflow, kwargs = _stage_call(stage.argv, p)
        except ValueError as exc:
            return Failed(message=f"{stage.name}: {exc}")
        state = subflow(**kwargs, return_state=True)
        if state.is_failed():
            return Failed(message=f"{stage.name}: {state.message or 'failed'}")
        committed = commit_stage_task(root, stage.name)
        if isinstance(committed, StepError):
            return Failed(message=f"{stage.name}: {committed.message}")
        ran.append(stage.name)
    pushed: int | StepError = 0
    if params.push and ran:
        remote = default_remote_task(root)
        if isinstance(remote, str):
            pushed = push_outputs_task(root)
            if isinstance(pushed, StepError):
                return Failed(message=f"dvc push: {pushed.message}")
    summary = run_summary_task(
        root, p.evaluate.out, p.registry.out, sorted(p.experiments), ran, skipped
    )
    if isinstance(summary, StepError):
        return Failed(message=f"summary: {summary.message}")
    create_markdown_artifact(summary, key=artifact_key("tessera", "pipeline"))
    return Completed(data={"ran": ran, "skipped": skipped, "pushed": pushed, "summary": summary})
