"""Which Tessera a process runs: the package version and a fingerprint of its code.

Workers and nodes that run tasks or ranks for a command must run the same code as the command
itself; comparing fingerprints turns a mismatch into one line naming the worker, where it
would otherwise fail late (a task graph that does not deserialise) or silently differ.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

FINGERPRINT_ENV = "TESSERA_CODE_FINGERPRINT"  # what the launching command runs


def version() -> str:
    """The installed distribution's version ("unknown" outside an install)."""
    try:
        return metadata.version("tessera")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def code_fingerprint() -> str:
    """sha256 of every Python source file of the package (path and bytes), in sorted order."""
    root = Path(__file__).resolve().parents[1]  # the folder that holds models/, tasks/, flows/
    h = hashlib.sha256()
    for room in ("flows", "tasks", "models"):
        for f in sorted((root / room).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def identity() -> str:
    """``VERSION+FINGERPRINT``, as one worker reports itself to the command."""
    return f"{version()}+{code_fingerprint()}"
