"""The local Prefect server: started once by the first command, reused, state in the project
(or the user's state folder), stopped when idle or asked; nothing left in the working folder."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tessera.flows.local_api import QUIET_SERVICES, STATE_FILE, read_state, server_environment
from tests.helpers import write_geotiff

BIN = Path(sys.executable).parent


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
    state = read_state(home)
    if state:
        for pid in (state["pid"], state.get("server_pid")):
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (ProcessLookupError, TypeError, ValueError):
                pass


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
        assert state is not None and state["url"].startswith("http://127.0.0.1:")

        t0 = time.monotonic()
        second = _tessera(["tile", "--input", "g.tif", "--out", "t2", "--size", "16"], work, env)
        took = time.monotonic() - t0
        assert second.returncode == 0, second.stderr
        assert "starting" not in second.stderr
        assert read_state(home) == state
        assert took < 25, took  # no new API to start (a generous bound for a loaded machine)
        runs = [r for r in _flow_runs(state["url"]) if r["state_type"] == "COMPLETED"]
        assert len(runs) == 2  # both runs recorded by the one server

        assert sorted(p.name for p in work.iterdir()) == ["g.tif", "t1", "t2"]  # no .prefect
        status = _tessera(["server", "status"], work, env)
        assert state["url"] in status.stdout and str(home) in status.stdout

        deadline = time.monotonic() + 90  # idle after 18 s, checked every 5 s
        while (home / STATE_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not (home / STATE_FILE).exists(), "the idle server did not stop"
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(int(state["server_pid"]), 0)
                time.sleep(0.2)
    finally:
        _kill(home)


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
        assert stop.returncode == 0 and f"pid {state['pid']}" in stop.stdout
        assert read_state(home) is None
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(int(state["server_pid"]), 0)
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
