"""torchmetrics' ``scipy.signal`` import, skipped in Tessera's own processes
(tessera.tasks.base.lean_imports); each case in a fresh interpreter. That the entry points
install it, and importing Tessera does not: tests/test_startup.py."""

from __future__ import annotations

import json
import subprocess
import sys

_SKIPPED = """
from tessera.tasks.base.lean_imports import skip_scipy_signal
skip_scipy_signal()
"""

_LIGHTNING = """
import json, sys
import lightning.pytorch, torch, torchmetrics
import lightning_utilities.core.imports as flags
mean = torchmetrics.MeanMetric()
mean.update(torch.tensor([1.0, 3.0]))
seen = {"signal": "scipy.signal" in sys.modules, "scipy": "scipy" in sys.modules,
        "mean": float(mean.compute()), "available": flags.package_available("scipy")}
import scipy.signal
seen["hamming"] = [round(float(x), 2) for x in scipy.signal.windows.hamming(3)]
print(json.dumps(seen))
"""


def _run(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def test_lightning_imports_without_scipy_and_torchmetrics_still_works():
    seen = _run(_SKIPPED + _LIGHTNING)
    assert not seen["signal"] and not seen["scipy"]
    assert seen["mean"] == 2.0  # a metric of the skipped package computes
    assert seen["available"]  # Lightning's own check is left as it was
    assert seen["hamming"] == [0.08, 1.0, 0.08]  # SciPy imports where it is asked for


def test_without_the_skip_lightning_imports_scipy_signal():
    """The cost the skip removes is there: if torchmetrics stops importing it, this fails and
    tessera.tasks.base.lean_imports can go."""
    assert _run(_LIGHTNING)["signal"]
