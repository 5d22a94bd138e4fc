"""Python's cyclic garbage collector in Tessera's own processes.

A training rank or a command imports torch, Lightning, Prefect or MLflow: ~900,000 objects that
live as long as the process. At Python's default thresholds (700, 10, 10) the collector runs
~1,700 times in a tiny training rank, most of them while those are imported, and its full
passes walk every one of them. Measured with `gc.callbacks` on one tiny two-epoch training
here, an A/B at the same minutes: the rank spent 1.37 s collecting at the defaults and
0.71-0.81 s at :data:`THRESHOLDS` (of ~6 CPU-s); its `tessera train` launcher 0.18-0.21 s, then
0.09-0.13 s.

The collector still runs and frees cyclic garbage as before; only its youngest generation waits
for 10,000 new objects, not 700, between passes.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
"""``gc.set_threshold`` of a Tessera process: 10,000 new objects between young collections."""


def tune_collector() -> None:
    """Set :data:`THRESHOLDS`; called first by each entry point (:mod:`.startup`)."""
    gc.set_threshold(*THRESHOLDS)
