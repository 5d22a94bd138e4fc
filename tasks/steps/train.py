"""The steps of ``tessera train``: write the run config, launch the training processes."""

from __future__ import annotations

from tessera.tasks.steps import Step
from tessera.tasks.training.launch import launch_training, write_run_config

# train: no retries, a failed training run is reported, not silently repeated
write_run_config_step = Step(write_run_config, "write-run-config")
launch_training_step = Step(launch_training, "launch-training")
