"""What Tessera's own processes do first (tessera.tasks.base.startup): a training rank and a
command set the collector's thresholds and install the skip of torchmetrics' ``scipy.signal``
before their heavy imports; importing Tessera as a library does neither."""

from __future__ import annotations

import json
import subprocess
import sys

from tessera.tasks.base.collector import THRESHOLDS

# runs an entry point as its process would, and prints what it left behind
_PROBE = """
import gc, json, runpy, sys
from tessera.tasks.base import lean_imports
sys.argv = {argv!r}
try:
    {call}
except SystemExit:
    pass
skip = any(isinstance(f, lean_imports._Finder) for f in sys.meta_path)
print(json.dumps({{"thresholds": list(gc.get_threshold()), "skip": skip}}))
"""


def _left(argv: list[str], call: str) -> dict:
    code = _PROBE.format(argv=argv, call=call)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip(), res.stderr[-2000:]
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def test_a_training_rank_starts_tuned():
    call = "runpy.run_module('tessera.models.run.fit', run_name='__main__')"
    left = _left(["fit", "--config", "/nonexistent/run_config.json"], call)
    assert left == {"thresholds": list(THRESHOLDS), "skip": True}


def test_the_command_line_starts_tuned():
    call = "import tessera.flows.cli as c; c.os._exit = lambda code: sys.exit(code); c.main()"
    assert _left(["tessera", "--help"], call) == {"thresholds": list(THRESHOLDS), "skip": True}


def test_importing_tessera_leaves_the_process_alone():
    left = _left(["python"], "import tessera.models.run.fit, tessera.flows.cli")
    assert left == _left(["python"], "pass") and not left["skip"]
