"""Input files Tessera refuses, each with the reason in one line."""

from __future__ import annotations

from pathlib import Path


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
