"""The one error policy: a user sees one line naming the file and the problem, never a
traceback, unless ``TESSERA_DEBUG=1`` is set.

The CLI, the flows, the steps and the training entry point all apply it through
:func:`one_line`, :func:`debugging` and :func:`returning_errors`. An exception class marks
its message as meant for users with a ``one_line = True`` attribute.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class StepError:
    """A step that could not be done, returned (not raised) so that Prefect logs no traceback;
    the flow turns it into a one-line failed state."""

    message: str


def one_line(exc: BaseException) -> str:
    """The one line a user sees for ``exc``: expected errors keep their message (an OS error
    names its path), others are prefixed with their type."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"
    text = str(exc) if expected(exc) else f"{type(exc).__name__}: {exc}"
    return (text.splitlines() or [type(exc).__name__])[0]


def expected(exc: BaseException) -> bool:
    """An error meant for users (bad input, a refused output, an OS error), not a bug."""
    return isinstance(exc, (ValueError, OSError)) or bool(getattr(exc, "one_line", False))


def user_message(exc: BaseException) -> str:
    """What a command prints for ``exc``: an expected error its own line(s), one per problem;
    an OS error naming its path; a bug in one line naming its type."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return one_line(exc)
    if expected(exc):
        return str(exc).strip() or type(exc).__name__
    return f"internal error: {type(exc).__name__}: {exc} (TESSERA_DEBUG=1 for details)"


def debugging() -> bool:
    """``TESSERA_DEBUG=1``: let exceptions through, tracebacks and all."""
    return bool(os.environ.get("TESSERA_DEBUG"))


def returning_errors(fn: Callable[P, R]) -> Callable[P, R | StepError]:
    """``fn``, with any exception returned as a :class:`StepError` (one line).

    With ``TESSERA_DEBUG=1`` they are raised, tracebacks and all.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | StepError:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if debugging():
                raise
            return StepError(one_line(exc))

    return wrapper
