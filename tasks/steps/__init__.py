"""Every Prefect task of Tessera, each built by :class:`Step` over a plain function; one
module per stage (``tasks.steps.<stage>``), so that a stage's code is what it imports.

The one rule for wrappers: a step returns its function's exceptions as values
(:class:`~tessera.tasks.base.error_policy.StepError`), so Prefect logs no traceback and never
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

from tessera.tasks.base.error_policy import StepError, returning_errors
from tessera.tasks.base.files import read_yaml_mapping

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


# a params file, read by the runs that start from one (the pipeline, the scheduled predictions)
read_params_step = Step(read_yaml_mapping, "read-params", cache_policy=NONE)
