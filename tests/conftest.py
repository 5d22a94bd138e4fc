"""Shared fixtures: an offline Prefect harness for the session and the in-process CLI."""

from __future__ import annotations

import gc
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, chdir, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tessera.flows.local_server.api import QUIET_SERVICES
from tessera.tasks.base.startup import start_process

# each worker imports torch, Lightning, Prefect and MLflow, as Tessera's commands do
start_process()

_HOME = Path(tempfile.mkdtemp(prefix="tessera-test-prefect-"))
os.environ["PREFECT_HOME"] = str(_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# the MLflow servers tests start run no GenAI jobs: without this each starts job consumers
# (3 CPU-s each, several per server), as the cluster's server does not (tasks/cluster/servers)
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# every Prefect server of the session (the harness's, the cluster's, the tests' own) runs its
# services as Tessera's local server does, less the scheduler's slower loops: the deployment
# tests wait for scheduled runs, which Prefect's 5-second loop creates at once
for _name, _value in QUIET_SERVICES.items():
    if "SCHEDULER" not in _name:
        os.environ.setdefault(_name, _value)
# one intra-op thread for every torch of the session, the tests' own and their children's: the
# tiny models here gain nothing from a second thread, and two workers each running
# two-threaded processes on two cores spin OpenMP's waiting threads (measured: 300 steps of a
# tiny conv net took 7-13 CPU-s at the default, 0.8-1.0 with one thread, the same loss; the
# whole suite's wall time did not move, 15 m 57 s with and without)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# no background server outlives a test: flows use the session's API (or a temporary one);
# tests of the local server opt in and stop it themselves
os.environ["TESSERA_PREFECT_API"] = "ephemeral"


# the modules that read the session's :func:`tiny_trained` project: one worker runs them all
TINY_TRAINED_READERS = (
    "tests/models/test_train.py",
    "tests/models/test_checkpoint.py",
    "tests/evaluation/test_evaluate.py",
    "tests/prediction/test_predict_cli.py",
)


def test_group(nodeid: str) -> str:
    """The unit a parallel run keeps on one worker: the test's module, so that its trained
    fixtures are made once; the readers of :func:`tiny_trained`, which is trained once; or
    the whole cluster tier, which shares one cluster."""
    module = nodeid.split("::", 1)[0]
    if module in TINY_TRAINED_READERS:
        return "tiny-trained"
    return "tests/cluster" if module.startswith("tests/cluster/") else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``pytest -n 3`` (as ``make test``) sends each :func:`test_group` whole to one worker.

    xdist's own ``loadgroup`` cannot do it under pytest 9: it renames items through
    ``Node._nodeid``, which pytest 9 no longer reads, so a module's tests were split between
    the workers and each worker built the module's fixtures again."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return GroupScheduling(config, log)  # type: ignore[arg-type]


# a test whose setup or call takes longer needs @pytest.mark.long("why, in three words or more")
LONG_S = 60.0
_unexplained: list[str] = []


def long_reason_problems(items: list[pytest.Item]) -> list[str]:
    """Each ``long`` marker without a reason of three words or more."""
    bad = []
    for item in items:
        marker = item.get_closest_marker("long")
        reason = str(marker.args[0]) if marker and marker.args else ""
        if marker and len(reason.split()) < 3:
            bad.append(f"{item.nodeid}: pytest.mark.long needs a reason of three words or more")
    return bad


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if problems := long_reason_problems(items):
        raise pytest.UsageError("\n".join(problems))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The collected modules live as long as the worker: the collector's full passes need not
    walk them again. Measured on tests/models/test_trainers.py, test_data.py and tests/tiling in
    one process (~18 CPU-s): 3.4-3.7 s of collection at Python's defaults, 1.7-2.0 s tuned."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Marks the reports of a ``long`` test, which cross from xdist's workers with them."""
    outcome = yield
    if item.get_closest_marker("long") is not None:
        outcome.get_result().user_properties.append(("long", True))  # type: ignore[attr-defined]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.duration > LONG_S and ("long", True) not in report.user_properties:
        _unexplained.append(f"{report.duration:.1f}s {report.when} {report.nodeid}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Lists the tests over ``LONG_S`` whose reason is not written beside them."""
    if _unexplained:
        terminalreporter.section(f"over {LONG_S:.0f} s without pytest.mark.long and its reason")
        for line in _unexplained:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect API for every flow of the session; yields its URL."""
    import prefect.testing.utilities as harness
    from prefect.settings import PREFECT_API_URL

    from tessera.flows.local_server.api import SEEDED_START, seed_database

    def seeded_folder() -> str:
        """The harness's database folder, its database a copy as Tessera's local server's
        (tessera.flows.local_server.api.seed_database): ~9 s of CPU less per harness."""
        folder = tempfile.mkdtemp()
        if seed_database(Path(folder) / "prefect-test.db"):
            os.environ.update({k: v for k, v in SEEDED_START.items() if k not in os.environ})
        return folder

    make_folder = harness.mkdtemp  # type: ignore[attr-defined]
    ours = [name for name in SEEDED_START if name not in os.environ]
    with ExitStack() as stack:
        harness.mkdtemp = seeded_folder  # type: ignore[attr-defined]
        try:
            stack.enter_context(harness.prefect_test_harness(server_startup_timeout=90))
        finally:  # for the harness's server only, started or not
            harness.mkdtemp = make_folder  # type: ignore[attr-defined]
            for name in ours:
                os.environ.pop(name, None)
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def cli(prefect_api: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``tessera ARGS`` in-process in a working directory; returns (rc, stdout, stderr)."""
    from tessera.flows.cli import run

    def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        rc = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return invoke


def child_env(prefect_api: str) -> dict[str, str]:
    """Environment for child processes: the session's Prefect API, the venv on PATH."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = prefect_api
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env.get('PATH', '')}"
    return env


@pytest.fixture
def subprocess_env(prefect_api: str) -> dict[str, str]:
    """A fresh :func:`child_env` for one test."""
    return child_env(prefect_api)


@dataclass(frozen=True)
class TrainedProject:
    """A project with every tiny experiment trained, and what each training printed."""

    root: Path
    runs: dict[str, tuple[int, str, str]]  # experiment: (rc, stdout, stderr) of its training


@pytest.fixture(scope="session")
def tiny_trained(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> TrainedProject:
    """Every tiny experiment (tests/conf/tiny_experiments.yaml) trained once for the session,
    with its defaults, in a catalogued project (:func:`tests.helpers.training_dir`). Read it
    only; a test that changes it works on a copy (:func:`tests.helpers.relocated`)."""
    from tessera.flows.cli import run
    from tests.helpers import TINY_EXPERIMENTS, training_dir

    root = training_dir(tmp_path_factory.mktemp("tiny-trained"), TINY_EXPERIMENTS, True)
    runs = {}
    with chdir(root):
        for name in TINY_EXPERIMENTS:
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                rc = run(["train", "--experiment", name])
            runs[name] = (rc, out.getvalue(), err.getvalue())
    return TrainedProject(root, runs)
