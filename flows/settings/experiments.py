"""Experiments of ``params.yaml`` resolved into the parameters of the train, evaluate and
register flows: ``train`` defaults merged with each experiment's overrides, validated."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from tessera.flows.settings.schema import EvaluateParams, TesseraParams
from tessera.models.checkpoint import BEST_CHECKPOINT
from tessera.models.run.run_config import (
    CHECKPOINT_DIR,
    RunConfig,
    TrainerParams,
    validate_model_params,
)
from tessera.tasks.prediction.predict_options import Blend
from tessera.tasks.training.launch_options import LaunchLimits, LaunchParams


def default_tracking(root: Path) -> tuple[str, str | None]:
    """MLflow tracking URI and artifact location: ``$MLFLOW_TRACKING_URI`` or the embedded store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env, None
    root = root.resolve()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()


class TrainFlowParams(BaseModel):
    """A resolved experiment plus how to launch it."""

    run: RunConfig
    launch: LaunchParams = Field(default_factory=LaunchParams)


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
    runner = params.runner
    launch = LaunchParams(
        launcher=runner.training,
        devices=run.trainer.devices,
        num_nodes=run.trainer.num_nodes,
        resume=resume,
        rdzv_endpoint=train.rdzv_endpoint,
        **runner.model_dump(include=set(LaunchLimits.model_fields)),
    )
    return TrainFlowParams(run=run, launch=launch)


class EvaluateFlowParams(BaseModel):
    """A resolved experiment, its checkpoint and the evaluation settings."""

    run: RunConfig
    checkpoint: str
    out_dir: str
    evaluate: EvaluateParams
    catalog: str = Field(default="", description="The scenes, for the stitched-map score.")
    overlap: float = Field(default=0.25, description="Stitching as tessera predict does it.")
    blend: Blend = "gaussian"
    heldout: list[str] = Field(default_factory=list, description="Held-out sources.")


def resolve_evaluation(
    params: TesseraParams, name: str, checkpoint: Path | None = None
) -> EvaluateFlowParams:
    """The experiment's run config, its best checkpoint (unless given) and the output folder."""
    run = resolve_experiment(params, name).run
    ckpt = checkpoint or Path(run.out_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT
    return EvaluateFlowParams(
        run=run,
        checkpoint=str(ckpt),
        out_dir=str(Path(params.evaluate.out) / name),
        evaluate=params.evaluate,
        catalog=params.tile.catalog,
        overlap=params.predict.overlap,
        blend=params.predict.blend,
        heldout=params.experiments[name].heldout,
    )
