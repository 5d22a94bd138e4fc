"""Input files Tessera refuses, each with the reason in one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

MAX_VOLUME_BYTES = 4 << 30  # a volume whose header claims more is refused before reading


class BadInputError(Exception):
    """An input file Tessera refuses, with the reason in one line."""

    one_line = True

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason.replace("\n", " ").strip()
        super().__init__(f"{self.path}: {self.reason}")

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form used by ``rejected.json``."""
        return {"path": self.path, "reason": self.reason}

    def __reduce__(self) -> tuple[type[BadInputError], tuple[str, str]]:
        return (BadInputError, (self.path, self.reason))


def rejecting_bad_input(fn: Callable[P, R]) -> Callable[P, R | dict[str, Any]]:
    """``fn``, with a refused input returned as ``{"rejected": {"path": ..., "reason": ...}}``.

    A refused input is an answer, not a failure: it is neither retried nor logged with a
    traceback; the flow decides (fail or skip).
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except BadInputError as exc:
            return {"rejected": exc.as_dict()}

    return wrapper


def check_exists(path: Path) -> None:
    """Refuse a missing path or an empty file."""
    if not path.exists():
        raise BadInputError(path, "file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
