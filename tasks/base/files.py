"""Small files: atomic writes (a temporary file beside the target, then a rename; errors
name the file) and the YAML mapping of a params file."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def attempt_path(out: Path, suffix: str) -> Path:
    """A hidden name beside ``out`` that no other writer of ``out`` uses, not created here (a
    file made there gets the umask's mode). Dask may run a task again while the first attempt
    still writes; each attempt stages its output under its own name, then renames it."""
    return out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def save_by_rename(path: Path, suffix: str, save: Callable[[Path], object]) -> Path:
    """``save(tmp)`` a file at an :func:`attempt_path` beside ``path`` (``suffix``: what the
    writer reads the format from), then rename it over ``path``; an error names ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = attempt_path(path, suffix)
    try:
        save(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise named(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def swap_directory(new: Path, out: Path, aside: Path) -> None:
    """Put folder ``new`` in the place of ``out`` by renames. The previous ``out`` waits at
    ``aside`` until the new one is in place, then is deleted. A stale ``aside`` is deleted
    first only while ``out`` exists; otherwise it may be the one copy left by an interrupted
    swap, and it is kept until ``new`` has taken the place."""
    if out.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(out, aside)
    os.replace(new, out)
    shutil.rmtree(aside, ignore_errors=True)


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


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file such as ``params.yaml`` (empty for an empty file)."""
    import yaml

    loaded = yaml.safe_load(path.read_text())
    if loaded is not None and not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return loaded or {}
