"""``tessera train``: one experiment, trained in child processes launched by a Prefect flow."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from tessera.flows.flow_helpers import failing_in_one_line
from tessera.flows.markdown import artifact_key, summary_markdown
from tessera.flows.settings.experiments import TrainFlowParams
from tessera.tasks.steps.train import launch_training_step, write_run_config_step


@flow(name="tessera-train")
@failing_in_one_line
def train_flow(params: TrainFlowParams) -> State[Any]:
    """Write the run config, launch ``tessera.models.run.fit`` (under torchrun for DDP), read the
    summary."""
    config_path = write_run_config_step(params.run, params.launch)
    summary = launch_training_step(config_path, params.launch)
    key = artifact_key("tessera-train", params.run.experiment)
    create_markdown_artifact(summary_markdown(summary), key=key)
    where = {"out_dir": params.run.out_dir, "tracking_uri": params.run.tracking_uri}
    return Completed(data=summary | where)
