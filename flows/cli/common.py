"""What every command does: validate the params with its options, run a flow or a stage
through the stage table, and turn a failure into one line (:class:`UserError`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from tessera.flows.settings.schema import TesseraParams

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: a.b=c.")]
RunnerOpt = Annotated[str | None, typer.Option("--task-runner", help="threads or dask.")]
BadOpt = Annotated[str | None, typer.Option("--on-bad-input", help="fail or skip.")]


class UserError(Exception):
    """A problem to report in one line, without a traceback."""

    one_line = True


def validation_message(exc: Any, section: str | None = None) -> str:
    """A pydantic ValidationError as ``loc: msg; loc: msg`` (locations under ``section``)."""
    head = [section] if section else []
    return "; ".join(f"{'.'.join(map(str, [*head, *e['loc']]))}: {e['msg']}" for e in exc.errors())


def _where(params: Path | None) -> str:
    """What a config problem names: the params file, or the command's options without one."""
    return str(params) if params is not None else "options"


def load(params: Path | None, overrides: list[str] | None) -> TesseraParams:
    """Validate ``params`` (None: the defaults) with the ``--set`` overrides; problems in one
    line. A command then validates its own options under :func:`options_of` and puts them in
    with :func:`with_sections`."""
    from pydantic import ValidationError

    from tessera.flows.settings.schema import load_params

    where = _where(params)
    try:
        return load_params(params, list(overrides or []))
    except ValidationError as exc:
        raise UserError(f"{where}: invalid config: {validation_message(exc)}") from None
    except OSError as exc:
        from tessera.tasks.base.error_policy import one_line

        raise UserError(one_line(exc)) from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


@contextmanager
def options_of(section: str, params: Path | None) -> Iterator[None]:
    """Where a command validates its options for the params' ``section`` (with the section's
    own ``model_validate``, ``with_changes`` or :func:`~tessera.flows.settings.schema.updated`):
    a problem is one line naming the section's key."""
    from pydantic import ValidationError

    try:
        yield
    except ValidationError as exc:
        raise UserError(
            f"{_where(params)}: invalid config: {validation_message(exc, section)}"
        ) from None


def with_sections(
    p: TesseraParams, params: Path | None, task_runner: str | None, **sections: Any
) -> TesseraParams:
    """``p`` with a command's own ``sections`` (each a section model it validated under
    :func:`options_of`) and its ``--task-runner``."""
    from tessera.flows.settings.schema import updated

    with options_of("runner", params):
        runner = updated(p.runner, kind=task_runner)
    return p.model_copy(update={**sections, "runner": runner})


def run_flow(flow_obj: Any, **kwargs: Any) -> Any:
    """Run a flow; a failed state becomes a one-line error."""
    from tessera.flows.local_server.api import prefect_api

    with prefect_api():
        state = flow_obj(**kwargs, return_state=True)
    if state.is_failed():
        raise UserError(state.message or "flow run failed")
    return state.result()


def run_stage(name: str, p: Any, params: Path | None, **options: Any) -> Any:
    """Run stage ``name`` through the stage table; config problems name the experiment."""
    from pydantic import ValidationError

    from tessera.flows.stages import StageOptions, stage_call

    opts = StageOptions(**options)
    try:
        flow_obj, kwargs = stage_call(name, p, opts)
    except ValidationError as exc:
        msg = validation_message(exc)
        raise UserError(f"{params}: experiments.{','.join(opts.experiment)}: {msg}") from None
    except ValueError as exc:
        raise UserError(f"{params or 'options'}: {exc}") from None
    return run_flow(flow_obj, **kwargs)
