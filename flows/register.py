"""``tessera register``: evaluated experiments into the MLflow registry, behind the gate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from flows.config import RegistryParams, TesseraParams
from flows.failures import failing_in_one_line
from flows.train import artifact_key, resolve_experiment
from models.config import RunConfig
from tasks.registry.gate import Direction
from tasks.registry.lineage import lineage_tags
from tasks.registry.mlflow_registry import check_tracking
from tasks.registry.register import check_record_output, primary_metric, register_experiment
from tasks.store.errors import StepError, returning_errors

# errors come back as values (one line, no Prefect traceback)
lineage_task = task(name="lineage", cache_policy=NONE)(returning_errors(lineage_tags))
check_tracking_task = task(name="check-tracking", cache_policy=NONE)(
    returning_errors(check_tracking)
)
# not retried as a whole: a retry would register a second version (HTTP calls retry inside)
register_experiment_task = task(name="register-experiment", cache_policy=NONE)(
    returning_errors(register_experiment)
)


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


def decisions_markdown(records: list[dict[str, Any]]) -> str:
    """The registered versions, their aliases and the gate's reasons."""
    lines = ["# Registry", "", "| model | version | alias | metric | value | reason |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in records:
        lines.append(
            f"| {r['name']} | {r['version']} | {r['alias']} | {r['metric']} | "
            f"{r['value']} | {r['reason']} |"
        )
    return "\n".join(lines)


@flow(name="tessera-register")
@failing_in_one_line
def register_flow(params: RegisterFlowParams) -> State[Any]:
    """Per experiment: lineage, log + register, READY + load-back check, gate, alias."""
    reg, root = params.registry, Path(params.root)
    for spec in params.experiments:  # before any work
        check_record_output(Path(reg.out) / f"{spec.run.experiment}.json")
    uris = {spec.run.tracking_uri for spec in params.experiments}
    for uri in sorted(u for u in uris if u):  # every store once, before anything is logged
        reachable = check_tracking_task(uri)
        if isinstance(reachable, StepError):
            return Failed(message=reachable.message)
    lineages: dict[str, dict[str, str]] = {}  # git, DVC and params are shared: once per store
    for store in sorted({spec.run.store for spec in params.experiments}):
        lineage = lineage_task(root, Path(store), params.params_sha256, str(flow_run.id))
        if isinstance(lineage, StepError):
            return Failed(message=lineage.message)
        lineages[store] = lineage
    records: list[dict[str, Any]] = []
    for spec in params.experiments:
        run = spec.run
        record = register_experiment_task(
            run,
            Path(spec.eval_dir),
            spec.name,
            spec.metric,
            spec.direction,
            reg.min_improvement,
            lineages[run.store],
            Path(reg.out) / f"{run.experiment}.json",
            reg.example_tiles,
            reg.ready_timeout_s,
        )
        if isinstance(record, StepError):
            return Failed(message=record.message)
        records.append(record)
    create_markdown_artifact(decisions_markdown(records), key=artifact_key("tessera", "registry"))
    return Completed(data=records)
