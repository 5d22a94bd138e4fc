"""What a command may write or replace: only its own outputs, recognised before any work.

Every folder Tessera replaces is checked here first. A path that exists and is not a
recognisable Tessera output, a path holding an input or the working directory, and staging
or backup folders beside it that Tessera did not make are all refused in one line, and
nothing is touched. Each room recognises its own outputs (a tile store in
``tasks.store.writer``, an evaluation in ``tasks.evaluation.report``, a training run in
``tasks.training.launch``, a registry record in ``tasks.registry.register_experiment``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

STAGING_MARKER = ".tessera-staging"


class OutputRefusedError(Exception):
    """An output path Tessera will not write to; the message is one line naming it."""

    one_line = True


def json_keys(path: Path) -> set[str]:
    """The top-level keys of a JSON object file (empty when unreadable or not an object)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    return set(obj) if isinstance(obj, dict) else set()


def is_staging(path: Path, legacy_names: Iterable[str] = ()) -> bool:
    """A staging folder Tessera made: its marker, or (older runs) only names it writes."""
    if (path / STAGING_MARKER).is_file():
        return True
    names = {p.name for p in path.iterdir()}
    return bool(legacy_names) and names <= set(legacy_names)


def mark_staging(path: Path) -> None:
    """Create ``path`` as a staging folder, marked so a later run knows it is Tessera's."""
    path.mkdir(parents=True, exist_ok=True)
    (path / STAGING_MARKER).touch()


def holds_nothing(path: Path) -> bool:
    """An empty folder, or one holding only the ``.gitignore`` DVC leaves when it empties a
    stage's outputs before rerunning it: nothing of the user's to lose."""
    return all(p.name == ".gitignore" for p in path.iterdir())


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(
    out: Path,
    recognise: Callable[[Path], bool],
    what: str,
    inputs: Iterable[Path] = (),
    siblings: dict[Path, Callable[[Path], bool]] | None = None,
) -> Path:
    """Refuse ``out`` unless it is absent, holds nothing (:func:`holds_nothing`) or is a
    Tessera output that ``recognise`` accepts.

    Also refused: an ``out`` that holds an input, the working directory or a folder above it,
    and any existing ``siblings`` (staging, backup) that their own check does not accept.
    Returns ``out`` made absolute against the working directory.
    """
    out = Path(os.path.abspath(out))  # relative to the working directory; ``..`` folded
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if _inside(cwd, real):
        raise OutputRefusedError(f"{out}: is the working directory or above it; refusing to use it")
    for inp in inputs:
        if _inside(Path(inp).resolve(), real):
            raise OutputRefusedError(f"{out}: holds the input {inp}; refusing to replace it")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputRefusedError(
            f"{out}: exists and is not a {what} folder; refusing to replace it "
            "(choose another output, or move it away yourself)"
        )
    if out.exists() and not holds_nothing(out) and not recognise(out):
        raise OutputRefusedError(
            f"{out}: exists and is not a {what}; refusing to replace it "
            "(choose another output, or move it away yourself)"
        )
    for path, ok in (siblings or {}).items():
        if (path.exists() or path.is_symlink()) and (
            path.is_symlink() or not path.is_dir() or not ok(path)
        ):
            raise OutputRefusedError(
                f"{path}: exists and was not made by Tessera; refusing to touch it "
                f"(move it away to write {out.name})"
            )
    return out


def check_output_file(out: Path, recognise: Callable[[Path], bool], what: str) -> Path:
    """Refuse a file output unless it is absent or a Tessera output that ``recognise`` accepts;
    returns it absolute."""
    out = Path(os.path.abspath(out))
    if out.is_symlink() or (out.exists() and not (out.is_file() and recognise(out))):
        raise OutputRefusedError(
            f"{out}: exists and is not a {what}; refusing to replace it "
            "(choose another output, or move it away yourself)"
        )
    return out
