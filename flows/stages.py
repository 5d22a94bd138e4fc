"""The stage table: each ``tessera <stage>`` command's flow and how its parameters are made.

The CLI and the pipeline flow both dispatch through :func:`stage_call`, so a stage run from
the shell, from ``dvc repro`` or as a subflow of ``tessera run`` is the same call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from tessera.flows.settings.schema import TesseraParams
from tessera.tasks.sources.specs import SourceSpec


class StageOptions(BaseModel):
    """What a stage command says beyond ``params.yaml`` (its typed command-line options)."""

    experiment: list[str] = Field(
        default_factory=list, description="train, evaluate: one; register: any (none: all)."
    )
    checkpoint: str | None = Field(default=None, description="evaluate: instead of best.ckpt.")
    devices: int | None = Field(default=None, ge=1, description="train: processes per node.")
    num_nodes: int | None = Field(default=None, ge=1, description="train: nodes.")
    resume: bool = Field(default=False, description="train: from the last checkpoint.")
    sources: list[SourceSpec] | None = Field(default=None, description="tile: ad-hoc inputs.")
    base: str = Field(
        default=".", description="What relative input paths start from (made absolute)."
    )
    model: str | None = Field(default=None, description="predict: a model reference.")
    source_names: list[str] = Field(default_factory=list, description="predict: --source.")

    def one_experiment(self, stage: str) -> str:
        """The single experiment ``stage`` needs."""
        if len(self.experiment) != 1:
            raise ValueError(f"tessera {stage} needs one --experiment")
        return self.experiment[0]


def _base(o: StageOptions) -> str:
    """The project folder, absolute: a Dask worker's working folder is not the command's."""
    from pathlib import Path

    return str(Path(o.base).resolve())


def _ingest(p: TesseraParams, o: StageOptions) -> dict[str, Any]:
    return {"params": p.ingest, "base": _base(o)}


def _tile(p: TesseraParams, o: StageOptions) -> dict[str, Any]:
    return {"params": p.tile, "sources": o.sources, "base": _base(o)}


def _train(p: TesseraParams, o: StageOptions) -> dict[str, Any]:
    from tessera.flows.settings.experiments import resolve_experiment
    from tessera.tasks.registry.mlflow_registry import configure_http_retries

    # the training processes log to the tracking server with these (they inherit them)
    configure_http_retries(p.registry.retries, p.registry.backoff_s)
    name = o.one_experiment("train")
    return {"params": resolve_experiment(p, name, o.devices, o.num_nodes, o.resume)}


def _evaluate(p: TesseraParams, o: StageOptions) -> dict[str, Any]:
    from pathlib import Path

    from tessera.flows.settings.experiments import resolve_evaluation

    ckpt = Path(o.checkpoint) if o.checkpoint else None
    return {"params": resolve_evaluation(p, o.one_experiment("evaluate"), ckpt)}


def _register(p: TesseraParams, o: StageOptions) -> dict[str, Any]:
    from tessera.flows.settings.registrations import resolve_registration
    from tessera.tasks.registry.mlflow_registry import configure_http_retries

    configure_http_retries(p.registry.retries, p.registry.backoff_s)
    return {"params": resolve_registration(p, o.experiment or None)}


def _predict(p: TesseraParams, o: StageOptions) -> dict[str, Any]:
    from tessera.flows.settings.predictions import resolve_prediction
    from tessera.tasks.registry.mlflow_registry import configure_http_retries

    configure_http_retries(p.registry.retries, p.registry.backoff_s)
    if len(o.experiment) > 1:
        raise ValueError("tessera predict takes one --experiment")
    exp = o.experiment[0] if o.experiment else None
    return {"params": resolve_prediction(p, o.model, exp, o.sources, o.source_names, _base(o))}


def _flow(module: str, name: str) -> Callable[[], Any]:
    def load() -> Any:
        import importlib

        return getattr(importlib.import_module(f"tessera.flows.{module}"), name)

    return load


@dataclass(frozen=True)
class Stage:
    """One stage: its flow (imported when used), its arguments, and whether it maps tasks on
    the configured task runner (threads or Dask)."""

    flow: Callable[[], Any]
    arguments: Callable[[TesseraParams, StageOptions], dict[str, Any]]
    maps_tasks: bool


STAGES: dict[str, Stage] = {
    "ingest": Stage(_flow("ingest", "ingest_flow"), _ingest, maps_tasks=True),
    "tile": Stage(_flow("tile", "tile_flow"), _tile, maps_tasks=True),
    "train": Stage(_flow("train", "train_flow"), _train, maps_tasks=False),
    "evaluate": Stage(_flow("evaluate", "evaluate_flow"), _evaluate, maps_tasks=False),
    "register": Stage(_flow("register", "register_flow"), _register, maps_tasks=False),
    "predict": Stage(_flow("predict", "predict_flow"), _predict, maps_tasks=True),
}


def stage_call(name: str, params: TesseraParams, options: StageOptions) -> tuple[Any, dict]:
    """The flow of stage ``name`` (on the configured task runner) and its keyword arguments."""
    if name not in STAGES:
        raise ValueError(f"no stage {name!r} (stages: {', '.join(STAGES)})")
    stage = STAGES[name]
    kwargs = stage.arguments(params, options)
    flow = stage.flow()
    if stage.maps_tasks:
        from tessera.flows.settings.runner import make_task_runner

        flow = flow.with_options(task_runner=make_task_runner(params.runner))
    return flow, kwargs


def parse_stage_command(argv: list[str]) -> tuple[str, StageOptions]:
    """The stage and options of a ``tessera <stage> [--experiment NAME]`` line of ``dvc.yaml``."""
    if argv[:1] != ["tessera"] or len(argv) < 2 or argv[1] not in STAGES:
        raise ValueError(f"not a tessera stage command: {' '.join(argv)}")
    opts = list(zip(argv[2::2], argv[3::2], strict=False))
    unknown = [k for k, _ in opts if k != "--experiment"]
    if unknown or len(argv) % 2:
        raise ValueError(f"no flow for the stage command: {' '.join(argv)}")
    return argv[1], StageOptions(experiment=[v for _, v in opts])
