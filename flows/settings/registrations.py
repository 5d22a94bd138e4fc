"""Evaluated experiments of ``params.yaml`` resolved into the parameters of the register
flow: registered names, gate metrics and the digest of the config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

from tessera.flows.settings.experiments import resolve_experiment
from tessera.flows.settings.schema import RegistryParams, TesseraParams
from tessera.models.run.run_config import (
    RunConfig,
)
from tessera.tasks.registry.gate import Direction
from tessera.tasks.registry.register_experiment import primary_metric


class RegistrationSpec(BaseModel):
    """One experiment's run config, evaluation folder, registered name and gate metric."""

    run: RunConfig
    eval_dir: str
    name: str
    metric: str
    direction: Direction


class RegisterFlowParams(BaseModel):
    """The experiments to register, the gate settings and what lineage needs."""

    experiments: list[RegistrationSpec]
    registry: RegistryParams
    params_sha256: str
    root: str = "."


def params_digest(params: TesseraParams) -> str:
    """sha256 of the validated config (overrides applied), as canonical JSON."""
    text = json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def resolve_registration(
    params: TesseraParams, names: list[str] | None = None, root: Path | None = None
) -> RegisterFlowParams:
    """Every experiment (or ``names``) with its registry name and primary metric."""
    specs = []
    for name in names or sorted(params.experiments):
        run = resolve_experiment(params, name, root=root).run
        reg = params.experiments[name].registry
        specs.append(
            RegistrationSpec(
                run=run,
                eval_dir=str(Path(params.evaluate.out) / name),
                name=reg.name or f"tessera-{name}",
                metric=primary_metric(run.model["type"], reg.primary_metric),
                direction=reg.direction,
            )
        )
    return RegisterFlowParams(
        experiments=specs,
        registry=params.registry,
        params_sha256=params_digest(params),
        root=str(root or Path.cwd()),
    )
