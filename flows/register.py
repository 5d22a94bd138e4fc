"""``tessera register``: evaluated experiments into the MLflow registry, behind the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, State

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import artifact_key, decisions_markdown
from tessera.flows.settings.registrations import RegisterFlowParams
from tessera.tasks.registry.gate import GateRule
from tessera.tasks.registry.register_experiment import Registration, check_record_output
from tessera.tasks.steps.register import check_tracking_step, lineage_step, register_experiment_step


@flow(name="tessera-register")
@failing_in_one_line
def register_flow(params: RegisterFlowParams) -> State[Any]:
    """Per experiment: lineage, log + register, READY + load-back check, gate, alias."""
    reg, root = params.registry, Path(params.root)
    for spec in params.experiments:  # before any work
        check_record_output(Path(reg.out) / f"{spec.run.experiment}.json")
    uris = {spec.run.tracking_uri for spec in params.experiments}
    for uri in sorted(u for u in uris if u):  # every store once, before anything is logged
        check_tracking_step(uri)
    lineages = {  # git, DVC and params are shared: once per store
        store: lineage_step(root, Path(store), params.params_sha256, str(flow_run.id))
        for store in sorted({spec.run.store for spec in params.experiments})
    }
    records: list[dict[str, Any]] = []
    for spec in params.experiments:
        run = spec.run
        records.append(
            register_experiment_step(
                run,
                Path(spec.eval_dir),
                Registration(
                    spec.name,
                    GateRule(
                        spec.metric,
                        spec.direction,
                        reg.min_improvement,
                        reg.require_beats_baseline,
                    ),
                    Path(reg.out) / f"{run.experiment}.json",
                    reg.example_tiles,
                    reg.ready_timeout_s,
                ),
                lineages[run.store],
            )
        )
    create_markdown_artifact(decisions_markdown(records), key=artifact_key("tessera", "registry"))
    where = [spec.run.tracking_uri for spec in params.experiments]
    return Completed(
        data=[r | {"tracking_uri": uri} for r, uri in zip(records, where, strict=True)]
    )
