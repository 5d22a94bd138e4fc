"""The steps of ``tessera register``: lineage, the tracking check, one experiment each."""

from __future__ import annotations

from prefect.cache_policies import NONE

from tessera.tasks.registry.lineage import lineage_tags
from tessera.tasks.registry.mlflow_registry import check_tracking
from tessera.tasks.registry.register_experiment import register_experiment
from tessera.tasks.steps import Step

# register: not retried as a whole, a retry would register a second version (HTTP calls
# retry inside)
lineage_step = Step(lineage_tags, "lineage", cache_policy=NONE)
check_tracking_step = Step(check_tracking, "check-tracking", cache_policy=NONE)
register_experiment_step = Step(register_experiment, "register-experiment", cache_policy=NONE)
