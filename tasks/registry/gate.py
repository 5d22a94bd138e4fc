"""The promotion gate: where a candidate goes, from its metric and the champion's.

Aliases only (registry stages are deprecated): ``champion`` moves to a candidate that beats
it by ``min_improvement`` on the experiment's primary metric, or when there is none; otherwise
the candidate becomes ``challenger``. Pure: no MLflow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]
Alias = Literal["champion", "challenger"]
CHAMPION: Alias = "champion"
CHALLENGER: Alias = "challenger"


@dataclass
class GateDecision:
    """Where the candidate goes, and why."""

    alias: Alias
    reason: str
    champion_version: str | None = None
    champion_value: float | None = None


def gate(
    metric: str,
    candidate: float | None,
    champion: float | None,
    direction: Direction,
    min_improvement: float,
    champion_version: str | None = None,
) -> GateDecision:
    """Champion if there is none, or if the candidate beats it by ``min_improvement`` (> 0)."""
    if candidate is None or not math.isfinite(candidate):
        return GateDecision(CHALLENGER, f"candidate has no {metric}", champion_version, champion)
    if champion_version is None:
        return GateDecision(CHAMPION, "first model: no champion yet", None, None)
    if champion is None or not math.isfinite(champion):
        reason = f"champion v{champion_version} has no {metric} to compare"
        return GateDecision(CHAMPION, reason, champion_version, None)
    gain = candidate - champion if direction == "max" else champion - candidate
    word = "higher" if direction == "max" else "lower"
    versus = f"{metric} {candidate:.4g} vs champion v{champion_version} {champion:.4g}"
    if gain > 0 and gain >= min_improvement:
        return GateDecision(CHAMPION, f"{versus}: {gain:.4g} {word}", champion_version, champion)
    return GateDecision(
        CHALLENGER,
        f"{versus}: needs {word} by at least {min_improvement:g} (gain {gain:.4g})",
        champion_version,
        champion,
    )
