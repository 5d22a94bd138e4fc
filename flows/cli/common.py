"""What every command does: validate the params with its options, run a flow or a stage
through the stage table, and turn a failure into one line (:class:`UserError`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

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


def load(params: Path | None, overrides: list[str] | None, **sections: dict[str, Any]) -> Any:
    """Validate ``params`` (None: the defaults) with the ``--set`` overrides, then with the
    typed options of the command (``sections``: ``{"tile": {"size": 32}}``; None values are
    not given); problems in one line."""
    from pydantic import ValidationError

    from tessera.flows.settings.schema import load_params, updated

    where = str(params) if params is not None else "options"
    section = None
    try:
        p = load_params(params, list(overrides or []))
        changed = {}
        for section, options in sections.items():
            changed[section] = _changed(getattr(p, section), options)
        return updated(p, **changed)
    except ValidationError as exc:
        raise UserError(f"{where}: invalid config: {validation_message(exc, section)}") from None
    except OSError as exc:
        from tessera.tasks.store.error_policy import one_line

        raise UserError(one_line(exc)) from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def _changed(section: Any, changes: dict[str, Any]) -> Any:
    """A params section with a command's options; a section that says how its options
    combine (the tile geometry: a new size brings the stride along) does it itself."""
    from tessera.flows.settings.schema import updated

    with_changes = getattr(section, "with_changes", None)
    return with_changes(**changes) if with_changes else updated(section, **changes)


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
