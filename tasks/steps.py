"""Every Prefect task of Tessera, each built by :class:`Step` over a plain function.

The one rule for wrappers: a step returns its function's exceptions as values
(:class:`~tessera.tasks.store.errors.StepError`), so Prefect logs no traceback and never
retries a refused input; calling the step in a flow turns such a value back into
:class:`StepFailed`, which the flow's ``failing_in_one_line`` reports as a one-line failed
state. Flows therefore declare no tasks and check no errors. Only flows import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, ParamSpec, TypeVar, cast

from prefect import task
from prefect.cache_policies import NONE
from tqdm import tqdm

from tessera.models.evaluate import run_inference
from tessera.tasks.evaluation.latents import score_latents
from tessera.tasks.evaluation.report import training_history, write_evaluation
from tessera.tasks.pipeline.dvc_stages import (
    commit_stage,
    default_remote,
    pipeline_stages,
    push_outputs,
    stage_changed,
)
from tessera.tasks.pipeline.params_file import read_params_file
from tessera.tasks.pipeline.report import run_summary
from tessera.tasks.registry.lineage import lineage_tags
from tessera.tasks.registry.mlflow_registry import check_tracking
from tessera.tasks.registry.register import register_experiment
from tessera.tasks.sources.cache_key import source_cache_key
from tessera.tasks.sources.catalog import inspect_source, load_catalog, write_catalog
from tessera.tasks.sources.errors import rejecting_bad_input
from tessera.tasks.store.errors import StepError, returning_errors
from tessera.tasks.store.writer import finish_store
from tessera.tasks.tiling.cut import tile_scene
from tessera.tasks.training.launch import launch_training, write_run_config

P = ParamSpec("P")
R = TypeVar("R")


class StepFailed(Exception):
    """A step's error, raised in the flow that called it; its message is the one line."""

    one_line = True


def _checked(result: Any) -> Any:
    if isinstance(result, StepError):
        raise StepFailed(result.message)
    return result


class Step(Generic[P, R]):
    """``fn`` as a Prefect task named ``name`` (``options`` as for ``prefect.task``).

    With ``errors_as_values`` (the default) the task returns its exceptions as values;
    without, it raises them, so that ``retries`` apply (an inspection that reads files).
    """

    def __init__(
        self, fn: Callable[P, R], name: str, errors_as_values: bool = True, **options: Any
    ) -> None:
        self.fn = fn
        self.task = task(name=name, **options)(returning_errors(fn) if errors_as_values else fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the step in the calling flow; its error is raised as :class:`StepFailed`."""
        return cast(R, _checked(self.task(*args, **kwargs)))

    def map(self, *args: Any, desc: str, unit: str, **kwargs: Any) -> list[R]:
        """Run the step once per item (``prefect.unmapped`` for shared arguments), showing
        progress; results in order, the first error raised as :class:`StepFailed`."""
        futures = self.task.map(*args, **kwargs)
        bar = tqdm(futures, desc=desc, unit=unit, leave=False, disable=None)
        return [cast(R, _checked(f.result())) for f in bar]


@contextmanager
def failing_as(prefix: str) -> Iterator[None]:
    """Prefix the message of a step that fails inside (``stage: message``)."""
    try:
        yield
    except StepFailed as exc:
        raise StepFailed(f"{prefix}{exc}") from None


# ingest and tile: inspections are cached across runs by code, parameters and file content
inspect_source_step = Step(
    inspect_source,
    "inspect-source",
    errors_as_values=False,
    retries=2,
    retry_delay_seconds=1,
    cache_key_fn=source_cache_key,
    persist_result=True,
)
write_catalog_step = Step(write_catalog, "write-catalog")
load_catalog_step = Step(load_catalog, "load-catalog")
# a full disk or a read-only output is reported in one line, not retried with a traceback
tile_scene_step = Step(rejecting_bad_input(tile_scene), "tile-scene")
finish_store_step = Step(finish_store, "publish-store")

# train: no retries, a failed training run is reported, not silently repeated
write_run_config_step = Step(write_run_config, "write-run-config")
launch_training_step = Step(launch_training, "launch-training")

# evaluate: arrays pass between these steps, so no input hashing and no result cache
run_inference_step = Step(run_inference, "run-inference", cache_policy=NONE)
score_latents_step = Step(score_latents, "score-latents", cache_policy=NONE)
training_history_step = Step(training_history, "training-history", cache_policy=NONE)
write_evaluation_step = Step(write_evaluation, "write-evaluation", cache_policy=NONE)

# register: not retried as a whole, a retry would register a second version (HTTP calls
# retry inside)
lineage_step = Step(lineage_tags, "lineage", cache_policy=NONE)
check_tracking_step = Step(check_tracking, "check-tracking", cache_policy=NONE)
register_experiment_step = Step(register_experiment, "register-experiment", cache_policy=NONE)

# pipeline: DVC reads and writes files; a stage itself is never retried blindly
read_params_step = Step(read_params_file, "read-params", cache_policy=NONE)
run_summary_step = Step(run_summary, "run-summary", cache_policy=NONE)
pipeline_stages_step = Step(pipeline_stages, "dvc-stages", retries=2, retry_delay_seconds=2)
stage_changed_step = Step(stage_changed, "dvc-status", retries=2, retry_delay_seconds=2)
commit_stage_step = Step(commit_stage, "dvc-commit", retries=2, retry_delay_seconds=2)
default_remote_step = Step(default_remote, "dvc-remote", cache_policy=NONE)
push_outputs_step = Step(push_outputs, "dvc-push", retries=3, retry_delay_seconds=[2, 10, 30])
