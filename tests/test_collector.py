"""The collector's thresholds in Tessera's own processes: a training rank and a command set
them before their heavy imports (tessera.tasks.base.collector)."""

from __future__ import annotations

import subprocess
import sys

from tessera.tasks.base.collector import THRESHOLDS

# runs an entry point as its process would, and prints the thresholds it left
_PROBE = """
import gc, runpy, sys
sys.argv = {argv!r}
try:
    {call}
except SystemExit:
    pass
print(gc.get_threshold())
"""


def _thresholds(argv: list[str], call: str) -> str:
    code = _PROBE.format(argv=argv, call=call)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return res.stdout.strip().splitlines()[-1]


def test_a_training_rank_tunes_the_collector():
    call = "runpy.run_module('tessera.models.run.fit', run_name='__main__')"
    assert _thresholds(["fit", "--config", "/nonexistent/run_config.json"], call) == str(THRESHOLDS)


def test_the_command_line_tunes_the_collector():
    call = "import tessera.flows.cli as c; c.os._exit = lambda code: sys.exit(code); c.main()"
    assert _thresholds(["tessera", "--help"], call) == str(THRESHOLDS)


def test_importing_tessera_leaves_the_collector_alone():
    call = "import tessera.models.run.fit, tessera.flows.cli"
    assert _thresholds(["python"], call) == _thresholds(["python"], "pass")
