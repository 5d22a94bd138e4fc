"""Errors that reach users as one line naming the file and the problem."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class BadInputError(Exception):
    """An input file Tessera refuses, with the reason in one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason.replace("\n", " ").strip()
        super().__init__(f"{self.path}: {self.reason}")

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form used by ``rejected.json``."""
        return {"path": self.path, "reason": self.reason}

    def __reduce__(self) -> tuple[type[BadInputError], tuple[str, str]]:
        return (BadInputError, (self.path, self.reason))


class StoreLockedError(Exception):
    """Another writer holds the lock on a tile store."""


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
    expected = isinstance(exc, (ValueError, OSError, BadInputError)) or getattr(
        exc, "one_line", False
    )
    text = str(exc) if expected else f"{type(exc).__name__}: {exc}"
    return (text.splitlines() or [type(exc).__name__])[0]


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
