"""File discovery, hashing and atomic writes."""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import re
import tempfile
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


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give it the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise named(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def named(exc: OSError, path: Path | str) -> OSError:
    """``exc`` naming ``path`` when it names no file (a full disk says only "No space left")."""
    if exc.filename:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def atomic_write_json(path: Path, obj: Any, compact: bool = False) -> None:
    """Atomically write ``obj`` as JSON (indented for people, compact for machines)."""
    text = (
        json.dumps(obj, sort_keys=True, separators=(",", ":"))
        if compact
        else json.dumps(obj, indent=2, sort_keys=True)
    )
    atomic_write_bytes(path, (text + "\n").encode())


def display_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())
