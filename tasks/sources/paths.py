"""File discovery, natural sorting, hashing and display of input paths."""

from __future__ import annotations

import glob as globlib
import hashlib
import re
from pathlib import Path
from typing import Any

_NATURAL = re.compile(r"(\d+)")


def natural_key(s: str) -> list[Any]:
    """Sort key that puts B2 before B10."""
    return [int(t) if t.isdigit() else t.lower() for t in _NATURAL.split(s)]


def resolve_paths(paths: list[str], pattern: str | None, base: Path) -> list[Path]:
    """Explicit paths plus the matches of ``pattern``, relative to ``base``, without duplicates."""
    out: list[Path] = [base / p for p in paths]
    if pattern:
        hits = globlib.glob(str(base / pattern), recursive=True)
        out += [Path(h) for h in sorted(hits, key=natural_key)]
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file (or of every file below a directory, in sorted order)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def display_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())
