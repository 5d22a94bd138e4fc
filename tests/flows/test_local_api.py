"""The local Prefect server: started once by the first command, reused, state in the project
(or the user's state folder), stopped when idle or asked; nothing left in the working folder."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from tessera.flows.local_server.api import (
    QUIET_SERVICES,
    STATE_FILE,
    read_state,
    seed_database,
    server_environment,
)
from tessera.flows.local_server.server_records import (
    ServerRecord,
    record,
    registry_dir,
    registry_file,
)
from tessera.tasks.cluster.processes import ours, start_time
from tests.helpers import write_geotiff

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def user_state(tmp_path, monkeypatch):
    """The user's state folder of this test, for its commands (``_env``) and for itself: the
    registry it reads, and the records it may take over, are never the real user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("PREFECT_HOME", None)
    env.update(
        TESSERA_PREFECT_API="local",
        XDG_STATE_HOME=str(tmp_path / "xdg"),
        PATH=f"{BIN}:{env.get('PATH', '')}",
        **extra,
    )
    return env


def _tessera(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "tessera"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def _flow_runs(api: str) -> list[dict]:
    req = urllib.request.Request(
        f"{api}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _kill(home: Path) -> None:
    """Kill the server this test started in ``home``: its recorded processes, if still them."""
    state = read_state(home)
    if state:
        for daemon in state.daemons():
            if ours(daemon):
                try:
                    os.killpg(daemon.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text("{}\n")
    (folder / "dvc.yaml").write_text("stages: {}\n")
    return folder


def _gone(state: ServerRecord, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while any(ours(d) for d in state.daemons()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(ours(d) for d in state.daemons())


@pytest.mark.slow
def test_first_command_starts_it_later_ones_reuse_it_and_it_stops_when_idle(tmp_path):
    project = tmp_path / "project"
    work = project / "scenes"
    work.mkdir(parents=True)
    (project / "params.yaml").write_text("{}\n")
    (project / "dvc.yaml").write_text("stages: {}\n")
    write_geotiff(work / "g.tif", np.ones((16, 16), np.uint16))
    home = project / ".prefect"
    env = _env(tmp_path, TESSERA_SERVER_IDLE_MINUTES="0.3")  # 18 s: room for a slow start
    try:
        first = _tessera(["tile", "--input", "g.tif", "--out", "t1", "--size", "16"], work, env)
        assert first.returncode == 0, first.stderr
        assert "starting a local Prefect server" in first.stderr
        state = read_state(home)
        assert state is not None and state.url.startswith("http://127.0.0.1:")

        t0 = time.monotonic()
        second = _tessera(["tile", "--input", "g.tif", "--out", "t2", "--size", "16"], work, env)
        took = time.monotonic() - t0
        assert second.returncode == 0, second.stderr
        assert "starting" not in second.stderr
        assert read_state(home) == state
        assert took < 25, took  # no new API to start (a generous bound for a loaded machine)
        runs = [r for r in _flow_runs(state.url) if r["state_type"] == "COMPLETED"]
        assert len(runs) == 2  # both runs recorded by the one server
        with closing(sqlite3.connect(home / "prefect.db")) as db:  # in the seeded database
            assert db.execute("SELECT count(*) FROM flow_run").fetchone()[0] == 2

        assert sorted(p.name for p in work.iterdir()) == ["g.tif", "t1", "t2"]  # no .prefect
        status = _tessera(["server", "status"], work, env)
        assert state.url in status.stdout and str(home) in status.stdout

        deadline = time.monotonic() + 90  # idle after 18 s, checked every 5 s
        while (home / STATE_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not (home / STATE_FILE).exists(), "the idle server did not stop"
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(state.server_pid, 0)
                time.sleep(0.2)
    finally:
        _kill(home)


def test_a_new_home_gets_a_migrated_database_and_an_existing_one_is_kept(tmp_path):
    db = tmp_path / "home" / "prefect.db"
    assert seed_database(db)
    with closing(sqlite3.connect(db)) as con:
        assert len(con.execute("SELECT version_num FROM alembic_version").fetchall()) == 1
        assert con.execute("SELECT count(*) FROM block_type").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM flow_run").fetchone()[0] == 0
    theirs = tmp_path / "theirs" / "prefect.db"
    theirs.parent.mkdir()
    theirs.write_bytes(b"the user's own bytes")
    assert not seed_database(theirs)
    assert theirs.read_bytes() == b"the user's own bytes"


@pytest.mark.slow
def test_outside_a_project_state_goes_to_the_user_folder_and_stop_stops_it(tmp_path):
    work = tmp_path / "anywhere"
    work.mkdir()
    write_geotiff(work / "g.tif", np.ones((16, 16), np.uint16))
    home = tmp_path / "xdg" / "tessera" / "prefect"
    env = _env(tmp_path)
    try:
        res = _tessera(["tile", "--input", "g.tif", "--out", "t", "--size", "16"], work, env)
        assert res.returncode == 0, res.stderr
        assert sorted(p.name for p in work.iterdir()) == ["g.tif", "t"]
        state = read_state(home)
        assert state is not None
        stop = _tessera(["server", "stop"], work, env)
        assert stop.returncode == 0 and f"pid {state.pid}" in stop.stdout
        assert read_state(home) is None
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(state.server_pid, 0)
                time.sleep(0.2)
        assert "no server running" in _tessera(["server", "stop"], work, env).stdout
    finally:
        _kill(home)


def test_quiet_services_are_prefect_settings_and_a_users_own_value_wins(monkeypatch, tmp_path):
    import prefect.settings

    for name in QUIET_SERVICES:
        assert hasattr(prefect.settings, name), name  # a misspelt name would be ignored
    assert "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED" not in QUIET_SERVICES  # `tessera serve`
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")
    env = server_environment(tmp_path)
    assert env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "true"
    assert env["PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS"] == "60"
    assert env["PREFECT_HOME"] == str(tmp_path)


@pytest.mark.slow
def test_status_lists_each_projects_server_and_stop_all_stops_them(tmp_path):
    a, b = _project(tmp_path / "a"), _project(tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(tmp_path)
    homes = [a / ".prefect", b / ".prefect"]
    try:
        cmd = [str(BIN / "tessera"), "server", "start"]
        starting = [
            subprocess.Popen(cmd, cwd=p, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for p in (a, b)
        ]  # both at once: the test waits for one start-up, not two
        for proc in starting:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        states = [read_state(h) for h in homes]
        assert all(states)
        assert sorted(p.name for p in registry_dir().iterdir()) == sorted(
            registry_file(h).name for h in homes
        )

        status = _tessera(["server", "status"], a, env)
        assert status.returncode == 0, status.stderr
        assert "servers of this user: 2" in status.stdout
        lines = {ln[2:].split("  ")[0]: ln for ln in status.stdout.splitlines() if "  pid " in ln}
        assert set(lines) == {str(h) for h in homes}
        assert lines[str(homes[0])].startswith("* ") and lines[str(homes[1])].startswith("  ")
        for state in states:
            line = lines[state.home]
            assert state.url in line and f"pid {state.pid}" in line and " idle " in line

        stop = _tessera(["server", "stop", "--all"], elsewhere, env)
        assert stop.returncode == 0, stop.stderr
        stopped = [ln for ln in stop.stdout.splitlines() if ln.startswith("stopped ")]
        assert len(stopped) == 2 and all(any(str(h) in ln for ln in stopped) for h in homes)
        assert all(_gone(state) for state in states)
        assert list(registry_dir().iterdir()) == []
        assert not any((h / STATE_FILE).exists() for h in homes)
        after = _tessera(["server", "status"], elsewhere, env)
        assert "servers of this user: 0" in after.stdout
    finally:
        for h in homes:
            _kill(h)


@pytest.mark.slow
def test_an_older_tesseras_record_is_taken_over_and_a_stale_one_removed(tmp_path):
    project = _project(tmp_path / "p")
    home = project / ".prefect"
    env = _env(tmp_path)
    try:
        res = _tessera(["server", "start"], project, env)
        assert res.returncode == 0, res.stderr
        state = read_state(home)
        assert state is not None
        # the record as Tessera wrote it before the registry: no start times, no user record
        legacy = {"pid": state.pid, "server_pid": state.server_pid, "url": state.url}
        (home / STATE_FILE).write_text(json.dumps({**legacy, "log": state.log}))
        registry_file(home).unlink()
        status = _tessera(["server", "status"], project, env)
        assert f"running at {state.url}" in status.stdout, status.stdout + status.stderr
        assert "servers of this user: 1" in status.stdout and f"pid {state.pid}" in status.stdout
        taken = read_state(home)
        assert taken is not None and taken.started == state.started
        assert registry_file(home).exists()

        _kill(home)  # the watchdog and the server die without a word: the record stays
        assert _gone(state)
        assert registry_file(home).exists() and (home / STATE_FILE).exists()

        status = _tessera(["server", "status"], project, env)
        assert status.returncode == 0, status.stderr
        assert f"stale record removed: {home} (pid {state.pid} is not its server)" in status.stdout
        assert "servers of this user: 0" in status.stdout
        assert not registry_file(home).exists() and not (home / STATE_FILE).exists()
        assert "no server recorded" in _tessera(["server", "stop", "--all"], project, env).stdout
    finally:
        _kill(home)


def test_a_record_whose_pid_now_names_another_process_is_not_killed(tmp_path):
    project = _project(tmp_path / "p")
    home = project / ".prefect"
    home.mkdir()
    env = _env(tmp_path)
    # a process of someone else that got the recorded PIDs: same PID, another start time
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = start_time(other.pid)
        assert started is not None
        rec = ServerRecord(
            home=str(home), url="http://127.0.0.1:9/api", pid=other.pid, started=started - 1,
            server_pid=other.pid, server_started=started - 1, log=str(home / "log"),
            since=time.time() - 60, idle_minutes=30,
        )  # fmt: skip
        record(rec)
        assert registry_file(home).exists()

        stop = _tessera(["server", "stop"], project, env)
        assert stop.returncode == 0 and "no server running" in stop.stdout
        assert other.poll() is None
        record(rec)
        stop_all = _tessera(["server", "stop", "--all"], project, env)
        assert stop_all.returncode == 0, stop_all.stderr
        assert f"stale record removed: {home} (pid {other.pid} is not its server)" in (
            stop_all.stdout
        )
        assert other.poll() is None and start_time(other.pid) == started  # still running
        assert not registry_file(home).exists() and not (home / STATE_FILE).exists()
    finally:
        other.kill()
        other.wait(timeout=10)
