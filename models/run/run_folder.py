"""An experiment's folder and the run that replaces it: a training writes into a staging
folder beside it, and its files take the place of the previous run's only once it is complete.

A run that is refused, fails or is killed at any step leaves the previous summary and
checkpoints exactly as they were. An unfinished run's staging folder is kept, so that
``--resume`` (or a restarted rank or requeued job) continues it from its last checkpoint.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tessera.models.checkpoint import LAST_CHECKPOINT
from tessera.models.run.run_config import (
    CHECKPOINT_DIR,
    PLOT_DIR,
    RUN_CONFIG_FILE,
    RUN_FILE,
    SUMMARY_FILE,
)
from tessera.tasks.base.files import swap_directory
from tessera.tasks.base.outputs import STAGING_MARKER

# what a training writes into its folder; the summary last, so that it marks a complete run
RUN_ITEMS = (RUN_CONFIG_FILE, CHECKPOINT_DIR, PLOT_DIR, RUN_FILE, SUMMARY_FILE)


def staging_dir(out_dir: str | Path) -> Path:
    """Where the run for ``out_dir`` writes until it is complete: a hidden sibling."""
    out = Path(out_dir)
    return out.parent / f".{out.name}.partial"


def _aside(path: Path) -> Path:
    return path.parent / f".{path.name}.replaced"


def promote(stage: Path, out: Path) -> None:
    """Move a complete run's files from ``stage`` over ``out``, item by item (a folder moves
    aside, the new one takes its name, the old one is deleted); items of the previous run
    that this one did not write are removed, anything else in ``out`` is left alone."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_ITEMS:
        new, old = stage / name, out / name
        if new.is_dir():
            swap_directory(new, old, _aside(old))
        elif new.is_file():
            os.replace(new, old)
        elif old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    shutil.rmtree(stage, ignore_errors=True)


def prepare_stage(out: Path, resume: bool, launch: str, peers_within_s: float = 0) -> Path:
    """The staging folder of launch ``launch`` for ``out``.

    Without ``resume``, a previous unfinished run's folder is discarded, unless it belongs to
    this same launch and was made within ``peers_within_s`` (another node of a multi-node run
    made it). With ``resume``, an unfinished run continues where it stopped; else the last
    complete run's checkpoints are copied in, so that its epochs go on. Raises
    FileNotFoundError when there is nothing to resume.
    """
    stage = staging_dir(out)
    if stage.exists() and not resume and not _same_launch(stage, launch, peers_within_s):
        shutil.rmtree(stage)
    if resume and not (stage / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
        done = out / CHECKPOINT_DIR
        if not (done / LAST_CHECKPOINT).is_file():
            raise FileNotFoundError(f"{done / LAST_CHECKPOINT}: no checkpoint to resume from")
        shutil.rmtree(stage, ignore_errors=True)
        shutil.copytree(done, stage / CHECKPOINT_DIR)
    stage.mkdir(parents=True, exist_ok=True)
    (stage / STAGING_MARKER).write_text(launch)
    return stage


def _same_launch(stage: Path, launch: str, within_s: float) -> bool:
    marker = stage / STAGING_MARKER
    try:
        return marker.read_text() == launch and time.time() - marker.stat().st_mtime < within_s
    except OSError:
        return False


def launch_of(stage: Path) -> str:
    """The launch a staging folder was prepared for."""
    return (stage / STAGING_MARKER).read_text()


def is_stage(path: Path) -> bool:
    """A staging folder a training run made (it carries the staging marker)."""
    return (path / STAGING_MARKER).is_file()


def discard_unresumable(stage: Path) -> None:
    """Remove a failed run's staging folder unless it holds a checkpoint to resume from."""
    if is_stage(stage) and not (stage / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
        shutil.rmtree(stage, ignore_errors=True)


def attempt_file(path: Path, attempt: int) -> Path:
    """``path`` of the first attempt; ``error.2.txt`` for ``error.txt`` of the third."""
    return path.with_suffix(f".{attempt}{path.suffix}") if attempt else path


def attempt_files(path: Path) -> list[Path]:
    """The :func:`attempt_file` s of ``path`` that exist, the last attempt's first."""

    def attempt(p: Path) -> int:
        number = p.suffixes[-2][1:] if len(p.suffixes) > 1 else ""
        return int(number) if number.isdigit() else 0

    found = [p for p in [path, *path.parent.glob(f"{path.stem}.*{path.suffix}")] if p.is_file()]
    return sorted(found, key=attempt, reverse=True)
