"""What the flows share: they fail in one line (anything raised in a flow body becomes a
Failed state, no traceback)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec

from prefect.states import Failed, State

from tessera.tasks.base.error_policy import debugging, one_line

P = ParamSpec("P")


def failing_in_one_line(fn: Callable[P, State[Any]]) -> Callable[P, State[Any]]:
    """``fn`` (a flow body), with an exception returned as ``Failed(message=<one line>)``.

    Prefect logs a traceback for an exception raised in a flow, not for a returned state; the
    CLI then prints the message. ``TESSERA_DEBUG=1`` lets the exception through.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> State[Any]:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if debugging():
                raise
            return Failed(message=one_line(exc))

    # the flow module's annotations, resolved there (Prefect would look them up here)
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return wrapper
