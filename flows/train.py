"""``tessera train``: one experiment, trained in child processes launched by a Prefect flow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from flows.config import TesseraParams
from flows.failures import failing_in_one_line
from models.config import RunConfig, TrainerParams, validate_model_params
from tasks.prefect_tasks import launch_training_task, write_run_config_task
from tasks.store.errors import StepError
from tasks.training.launch import default_tracking


class TrainFlowParams(BaseModel):
    """A resolved experiment plus how to launch it."""

    run: RunConfig
    resume: bool = False
    rdzv_endpoint: str | None = None
    devices: int = Field(default=1, ge=1)
    num_nodes: int = Field(default=1, ge=1)


def resolve_experiment(
    params: TesseraParams,
    name: str,
    devices: int | None = None,
    num_nodes: int | None = None,
    resume: bool = False,
    root: Path | None = None,
) -> TrainFlowParams:
    """Merge ``train`` defaults with an experiment's overrides; validate the model arguments."""
    if name not in params.experiments:
        known = ", ".join(sorted(params.experiments)) or "none"
        raise ValueError(f"unknown experiment {name!r} (params.yaml has: {known})")
    exp, train = params.experiments[name], params.train
    trainer = train.trainer.model_dump() | exp.trainer
    if devices is not None:
        trainer["devices"] = devices
    if num_nodes is not None:
        trainer["num_nodes"] = num_nodes
    uri, artifacts = (train.tracking_uri, None)
    if uri is None:
        uri, artifacts = default_tracking(root or Path.cwd())
    run = RunConfig(
        experiment=name,
        store=train.store,
        out_dir=str(Path(train.out) / name),
        tracking_uri=uri or None,
        artifact_location=artifacts,
        dataset=exp.dataset,
        model=validate_model_params(exp.model),
        trainer=TrainerParams.model_validate(trainer),
        loader=train.loader.model_copy(update=exp.loader),
    )
    return TrainFlowParams(
        run=run,
        resume=resume,
        rdzv_endpoint=train.rdzv_endpoint,
        devices=run.trainer.devices,
        num_nodes=run.trainer.num_nodes,
    )


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{name}".lower())


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run's headline figures as a Markdown table."""
    rows = [
        ("model", summary["model_type"]),
        ("world size", summary["world_size"]),
        ("epochs / steps", f"{summary['epochs']} / {summary['steps']}"),
        ("best val loss", summary["best_val_loss"]),
        ("best checkpoint", summary["best_checkpoint"]),
        ("wall time (s)", summary["wall_time_s"]),
    ]
    rows += [(k, v) for k, v in sorted(summary.get("test_metrics", {}).items())]
    lines = ["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    return f"# Training: {summary['experiment']}\n\n" + "\n".join(lines)


@flow(name="tessera-train")
@failing_in_one_line
def train_flow(params: TrainFlowParams) -> State[Any]:
    """Write the run config, launch ``models.train`` (under torchrun for DDP), read the summary."""
    config_path = write_run_config_task(params.run)
    if isinstance(config_path, StepError):
        return Failed(message=config_path.message)
    summary = launch_training_task(
        config_path, params.devices, params.num_nodes, params.resume, params.rdzv_endpoint
    )
    if isinstance(summary, StepError):
        return Failed(message=summary.message)
    key = artifact_key("tessera-train", params.run.experiment)
    create_markdown_artifact(summary_markdown(summary), key=key)
    return Completed(data=summary)
