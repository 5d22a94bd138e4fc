"""Empty databases made once per user and version, copied where a new one is needed.

A new MLflow or Prefect database costs seconds of CPU in schema migrations (MLflow ~4 s,
Prefect ~9 s here); a copy of one made earlier costs none. Each template is made once, in
``$XDG_CACHE_HOME/tessera/<kind>`` (``~/.cache/...``), by a child process under a lock, and
appears whole by a rename.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tessera.tasks.base.files import attempt_path

TEMPLATE_TIMEOUT_S = 300.0  # how long a child may take to make an empty database


class TemplateError(Exception):
    """A template could not be made; the message is one line."""

    one_line = True


def cache_folder(kind: str) -> Path:
    """``$XDG_CACHE_HOME/tessera/<kind>`` (``~/.cache`` without the variable)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tessera" / kind


def template(kind: str, name: str, argv: list[str], env: dict[str, str], what: str) -> Path:
    """The template ``<kind>/<name>`` (an empty ``what``), made once by running ``argv`` in
    the cache folder; ``{path}`` in ``argv`` and in ``env``'s values stands for the file to
    make, ``{python}`` for this Python."""
    folder = cache_folder(kind)
    path = folder / name
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".create.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time; the others then reuse it
        if path.is_file():
            return path
        partial = attempt_path(path, ".partial")

        def fill(text: str) -> str:
            return text.replace("{path}", str(partial)).replace("{python}", sys.executable)

        try:
            res = subprocess.run(
                [fill(a) for a in argv], capture_output=True, text=True, cwd=folder,
                env={k: fill(v) for k, v in env.items()}, timeout=TEMPLATE_TIMEOUT_S,
            )  # fmt: skip
            why = (res.stderr.strip().splitlines() or ["failed"])[-1] if res.returncode else ""
            if not why and not partial.is_file():
                why = "it wrote no database"
        except subprocess.TimeoutExpired:
            why = f"it did not finish within {TEMPLATE_TIMEOUT_S:.0f} s"
        except OSError as exc:
            why = str(exc)
        if why:
            partial.unlink(missing_ok=True)
            raise TemplateError(f"{path}: cannot create an empty {what}: {why}")
        os.replace(partial, path)
    return path


def copy_new(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` unless ``target`` exists (whole, by a rename; an existing
    file is never replaced); whether it was copied."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = attempt_path(target, ".partial")
    try:
        shutil.copyfile(source, partial)
        os.link(partial, target)  # fails, replacing nothing, if one appeared meanwhile
        return True
    except FileExistsError:
        return False
    finally:
        partial.unlink(missing_ok=True)
