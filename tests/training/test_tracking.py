"""The embedded MLflow store: a copy of an empty store made once per MLflow version, equal to
the one MLflow makes, and never over a store that exists."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import chdir, closing
from pathlib import Path

import pytest

from tessera.tasks.training.tracking import create_tracking_store, empty_store


def _content(db: Path) -> tuple[list[str], dict[str, list[tuple]]]:
    """The schema (each statement's lines in order: MLflow's own migration writes a table's
    constraints in a varying order) and every row, less the creation times."""
    with closing(sqlite3.connect(db)) as c:
        schema = sorted(
            "\n".join(sorted(ln.strip().rstrip(",") for ln in r[0].splitlines()))
            for r in c.execute("SELECT sql FROM sqlite_master")
            if r[0]
        )
        rows = {}
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cols = [r[1] for r in c.execute(f"PRAGMA table_info({table})")]
            keep = [k for k in cols if k not in ("creation_time", "last_update_time")]
            rows[table] = sorted(c.execute(f"SELECT {', '.join(keep)} FROM {table}").fetchall())
    return schema, rows


def test_a_new_store_is_the_one_mlflow_makes_and_the_template_is_made_once(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "a").mkdir()
    (tmp_path / "mlflow").mkdir()
    with chdir(tmp_path / "a"):
        create_tracking_store("sqlite:///mlflow.db")
    with chdir(tmp_path / "mlflow"):
        MlflowClient("sqlite:///mlflow.db").search_experiments()  # MLflow's own
    ours = _content(tmp_path / "a" / "mlflow.db")
    theirs = _content(tmp_path / "mlflow" / "mlflow.db")
    assert ours[0] == theirs[0]
    a = {k: v for k, v in ours[1].items() if k != "experiments"}
    b = {k: v for k, v in theirs[1].items() if k != "experiments"}
    assert a == b
    assert ours[1]["experiments"] == [
        (0, "Default", str(tmp_path / "a" / "mlruns" / "0"), "active", "default")
    ]
    assert theirs[1]["experiments"] == [
        (0, "Default", str(tmp_path / "mlflow" / "mlruns" / "0"), "active", "default")
    ]
    # MLflow uses the copy as its own
    client = MlflowClient(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "loss", 0.5)
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}

    template = empty_store()
    stamp = template.stat().st_mtime_ns
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # no child this time
    create_tracking_store(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    assert _content(tmp_path / "b" / "mlflow.db")[0] == theirs[0]
    assert template.stat().st_mtime_ns == stamp
    assert not list((tmp_path / "b").glob(".*partial"))


def test_a_store_that_exists_is_left_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"the user's own bytes")
    create_tracking_store(f"sqlite:///{db}")
    assert db.read_bytes() == b"the user's own bytes"
    assert not (tmp_path / "cache").exists()


def test_mlflow_that_cannot_make_a_store_is_one_line(tmp_path, monkeypatch):
    from tessera.tasks.training.tracking import TrackingError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "broken"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "mlflow.py").write_text("raise ImportError('mlflow is broken here')\n")
    with pytest.raises(TrackingError, match="cannot create an empty MLflow store: ImportError"):
        create_tracking_store(f"sqlite:///{tmp_path / 'p' / 'mlflow.db'}")
    assert not (tmp_path / "p" / "mlflow.db").exists()
    assert list((tmp_path / "cache" / "tessera" / "mlflow").glob("*.db")) == []


def test_mlflow_that_hangs_making_the_store_fails_within_its_bound(tmp_path, monkeypatch):
    import time

    from tessera.tasks.store import templates
    from tessera.tasks.training import tracking

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "slow"))
    monkeypatch.setattr(templates, "TEMPLATE_TIMEOUT_S", 2.0)
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "mlflow.py").write_text("import time\ntime.sleep(60)\n")
    started = time.monotonic()
    why = "empty MLflow store: it did not finish within 2 s"
    with pytest.raises(tracking.TrackingError, match=why):
        create_tracking_store(f"sqlite:///{tmp_path / 'p' / 'mlflow.db'}")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "p" / "mlflow.db").exists()
    assert list((tmp_path / "cache" / "tessera" / "mlflow").iterdir()) == [
        tmp_path / "cache" / "tessera" / "mlflow" / ".create.lock"
    ]


@pytest.mark.parametrize("bound_s", [1, 4, 30, 300, 3600])
def test_the_ranks_mlflow_retries_give_up_within_the_bound(bound_s):
    """Against a server that refuses every connection, the sleeps urllib3 takes between the
    retries MLflow makes (MLflow passes these variables to ``urllib3.Retry``) stay within the
    bound; each request may take the bound; MLflow's own cap on retries holds."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError
    from urllib3.util.retry import Retry

    from tessera.tasks.training.tracking import MAX_RETRIES, rank_http_environment

    env = rank_http_environment(bound_s)
    retries = int(env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    retry = Retry(total=retries, connect=retries, backoff_factor=int(
        env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]), backoff_jitter=0.0)  # fmt: skip
    slept, attempts = 0.0, 1
    with pytest.raises(MaxRetryError):
        while True:
            retry = retry.increment("GET", "/api", error=NewConnectionError(None, "refused"))
            slept += retry.get_backoff_time()
            attempts += 1
    assert attempts == retries + 1 and 1 <= retries <= MAX_RETRIES == 10
    assert slept <= bound_s and (slept > 0 or retries == 1)
    assert slept > bound_s / 4 or retries in (1, MAX_RETRIES)  # the bound is used, not wasted
    assert bound_s <= int(env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) < bound_s + 1
