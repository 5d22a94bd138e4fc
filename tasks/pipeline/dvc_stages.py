"""DVC as the pipeline's record of what is current: stage order, status, commit and push.

The pipeline flow asks DVC which stages are out of date, runs only those (as Prefect subflows)
and commits each one to ``dvc.lock`` when it succeeds, so scheduled runs, ``dvc repro`` and
``dvc status`` always agree.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_LOCK = Path(".dvc") / "tmp" / "tessera-run.lock"


class PipelineBusyError(Exception):
    """Another ``tessera run`` holds the project; the message is one line."""

    one_line = True


@contextmanager
def pipeline_lock(root: Path) -> Iterator[None]:
    """Hold the project for one pipeline run; a second run is refused at once."""
    path = root / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise PipelineBusyError(
                f"{root}: another tessera run (pid {holder}) is running this pipeline; "
                "wait for it to finish"
            ) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its DVC address (``train@landsat8-ssvae``) and its command."""

    name: str
    argv: list[str]


def _repo(root: Path) -> Any:
    from dvc.repo import Repo

    return Repo(str(root))


def pipeline_stages(root: Path) -> list[Stage]:
    """The ``dvc.yaml`` stages in dependency order (``.dvc`` data files left out)."""
    import networkx as nx

    with _repo(root) as repo:
        graph = repo.index.graph
        order = list(reversed(list(nx.topological_sort(graph))))
        return [
            Stage(s.addressing, shlex.split(s.cmd if isinstance(s.cmd, str) else s.cmd[0]))
            for s in order
            if getattr(s, "cmd", None)
        ]


def stage_changed(root: Path, name: str) -> bool:
    """Whether DVC sees the stage out of date (changed deps, params, outs, or never run)."""
    with _repo(root) as repo:
        return bool(repo.status(targets=[name]))


def commit_stage(root: Path, name: str) -> None:
    """Record the stage's deps, params and outputs in ``dvc.lock``, cache its outputs and
    git-ignore them, as ``dvc repro`` does."""
    with _repo(root) as repo, repo.scm_context(quiet=True):
        repo.commit(target=name, force=True)
        for stage in repo.stage.collect(name):
            for out in stage.outs:
                out.ignore()


def default_remote(root: Path) -> str | None:
    """The repository's default DVC remote, if one is configured."""
    with _repo(root) as repo:
        remote = repo.config.get("core", {}).get("remote")
        return str(remote) if remote else None


def push_outputs(root: Path) -> str:
    """``dvc push`` to the default remote; says how many files went where."""
    with _repo(root) as repo:
        name = repo.config.get("core", {}).get("remote")
        url = repo.config.get("remote", {}).get(name, {}).get("url", "?")
        return f"{int(repo.push())} files to {name} ({url})"
