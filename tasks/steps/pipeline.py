"""The steps of ``tessera run``: params, DVC stages, status, commits, push and summary."""

from __future__ import annotations

from prefect.cache_policies import NONE

from tessera.tasks.pipeline.dvc_stages import (
    commit_stage,
    default_remote,
    pipeline_stages,
    push_outputs,
    stage_changed,
)
from tessera.tasks.pipeline.run_report import run_summary
from tessera.tasks.steps import Step

# pipeline: DVC reads and writes files; a stage itself is never retried blindly
run_summary_step = Step(run_summary, "run-summary", cache_policy=NONE)
pipeline_stages_step = Step(pipeline_stages, "dvc-stages", retries=2, retry_delay_seconds=2)
stage_changed_step = Step(stage_changed, "dvc-status", retries=2, retry_delay_seconds=2)
commit_stage_step = Step(commit_stage, "dvc-commit", retries=2, retry_delay_seconds=2)
default_remote_step = Step(default_remote, "dvc-remote", cache_policy=NONE)
push_outputs_step = Step(push_outputs, "dvc-push", retries=3, retry_delay_seconds=[2, 10, 30])
