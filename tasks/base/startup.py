"""What each of Tessera's own processes does first, before its heavy imports: the ``tessera``
command, a training rank and the test workers. Importing Tessera as a library does none of it.
"""

from __future__ import annotations

from tessera.tasks.base.collector import tune_collector
from tessera.tasks.base.lean_imports import skip_scipy_signal


def start_process() -> None:
    """The collector's thresholds (:mod:`.collector`) and torchmetrics' skipped import of
    ``scipy.signal`` (:mod:`.lean_imports`), before torch and Lightning are imported."""
    tune_collector()
    skip_scipy_signal()
