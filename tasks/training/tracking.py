"""The MLflow tracking store a training logs to: created once, checked before any rank starts.

Neither function imports MLflow into the calling process (it costs seconds at start-up).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import math
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

from tessera.tasks.registry.http_retries import http_retry_environment
from tessera.tasks.store.templates import TemplateError, template


class TrackingError(Exception):
    """The tracking store cannot be used; the message is one line."""

    one_line = True


def create_tracking_store(uri: str) -> None:
    """Create an embedded (sqlite) MLflow store once, before several processes open it.

    Two ranks, or two nodes' launchers, creating it at once fail on MLflow's schema migration
    (``alembic_version``): the creation holds a lock file beside the database. The new store
    is a copy of an empty one this MLflow version made once (:func:`empty_store`), with its
    ``Default`` experiment's folder set as MLflow sets it (``./mlruns/0``); it appears whole,
    by a rename.
    """
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists() and path.stat().st_size > 0:
        return  # made already: no lock file needed
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.create.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held for as long as one creation takes
        if path.exists() and path.stat().st_size > 0:
            return
        template = empty_store()
        partial = path.with_name(f".{path.name}.partial")
        try:
            shutil.copyfile(template, partial)
            now = int(time.time() * 1000)
            with closing(sqlite3.connect(partial)) as db, db:
                db.execute(
                    "UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                    "last_update_time = ? WHERE experiment_id = 0",
                    (str(Path.cwd() / "mlruns" / "0"), now, now),
                )
            os.replace(partial, path)
        except BaseException as exc:
            partial.unlink(missing_ok=True)  # a failed copy leaves nothing half-made
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise TrackingError(f"{path}: cannot create the MLflow store: {exc}") from None
            raise


def empty_store() -> Path:
    """An empty MLflow store of the installed MLflow, made once per user and version
    (:mod:`tessera.tasks.store.templates`): MLflow's schema migration takes seconds of CPU, a
    copy none. Made in a child process, so that this one imports no MLflow and holds no
    connection."""
    code = (
        "import sys; from mlflow import MlflowClient; "
        "MlflowClient(sys.argv[1]).search_experiments()"
    )
    name = f"empty-{importlib.metadata.version('mlflow')}.db"
    argv = ["{python}", "-c", code, "sqlite:///{path}"]
    try:
        return template("mlflow", name, argv, dict(os.environ), "MLflow store")
    except TemplateError as exc:
        raise TrackingError(str(exc)) from None


def check_tracking_server(uri: str, within_s: float) -> None:
    """Fail in one line, within ``within_s``, unless the tracking server at an ``http(s)``
    ``uri`` answers its health check; other stores (files, databases) are not checked here."""
    if not uri.startswith(("http://", "https://")):
        return
    deadline = time.monotonic() + within_s
    why = "no answer"
    while True:
        wait = max(0.5, min(5.0, deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=wait) as r:
                if r.status == 200:
                    return
                why = f"HTTP {r.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            why = str(getattr(exc, "reason", exc)) or type(exc).__name__
        if deadline - time.monotonic() <= 1:
            raise TrackingError(
                f"MLflow tracking server {uri} did not answer within {within_s:.0f} s ({why}); "
                "nothing was changed"
            )
        time.sleep(1)


MAX_RETRIES = 10  # MLflow refuses more (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)


def rank_http_environment(bound_s: float) -> dict[str, str]:
    """The ranks' MLflow HTTP retries from the bound: a tracking server that is down fails
    the run within about ``bound_s`` (MLflow's own retries take ~4 minutes), and each request
    may take ``bound_s`` to be answered (an artifact upload through a loaded server), so one
    that hangs fails it within (r + 1)·``bound_s``. The r retries sleep 2 + 4 + … + 2^(r-1)
    = 2^r - 2 s in all: r is the largest with that ≤ ``bound_s``, at most 10."""
    retries = min(MAX_RETRIES, max(1, int(math.log2(bound_s + 2))))
    return http_retry_environment(retries, 1, max(1, math.ceil(bound_s)))
