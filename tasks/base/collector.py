"""Python's cyclic garbage collector in Tessera's own processes.

A training rank or a command imports torch, Lightning, Prefect or MLflow: ~900,000 objects that
live as long as the process. At Python's default thresholds (700, 10, 10) the collector runs
~1,300 times while they are imported, and its full passes walk every one of them. Measured on
one tiny two-epoch training rank (2 cores, `gc.callbacks`): 2.0 of its 9.9 CPU-s were collection
at the defaults, 0.8 of 7.7 CPU-s at :data:`THRESHOLDS`; a `tessera tile` command 0.30 of 3.0
CPU-s, then 0.20 of 2.8.

The collector still runs; it only waits for more new objects between passes (a generation
holds at most 10,000 more before it is collected), so cyclic garbage is freed as before.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)
"""``gc.set_threshold`` of a Tessera process: 10,000 new objects between young collections."""


def tune_collector() -> None:
    """Set :data:`THRESHOLDS`; called first by each entry point (the CLI, a training rank)."""
    gc.set_threshold(*THRESHOLDS)
