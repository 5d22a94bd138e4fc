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


@dataclass(frozen=True)
class Bar:
    """A baseline the candidate must beat before any comparison with the champion
    (``registry.require_beats_baseline``): what it is and its value of the metric."""

    name: str
    value: float


@dataclass(frozen=True)
class GateRule:
    """How a candidate is judged: the gate ``metric``, whether a higher or a lower value is
    better, the margin by which it must beat the champion, and whether it must first beat its
    evaluation's best baseline (``registry.require_beats_baseline``)."""

    metric: str
    direction: Direction = "max"
    min_improvement: float = 0.0
    require_beats_baseline: bool = False


@dataclass
class GateDecision:
    """Where the candidate goes, and why."""

    alias: Alias
    reason: str
    champion_version: str | None = None
    champion_value: float | None = None


HELD_OUT = "heldout_"


def gate_metric(metrics: dict[str, float | None], metric: str) -> str:
    """The metric the gate decides on: the held-out score of ``metric`` where the evaluation
    has one (a model that only memorised its training subject must not win), else ``metric``.

    The per-pixel forest is scored on the held-out scenes too, so ``registry.
    require_beats_baseline`` bars a segmentation model on its held-out score; a champion
    without a held-out score is replaced without a comparison."""
    held = f"{HELD_OUT}{metric}"
    return held if metrics.get(held) is not None else metric


def gate(
    metric: str,
    candidate: float | None,
    champion: float | None,
    direction: Direction,
    min_improvement: float,
    champion_version: str | None = None,
    bar: Bar | None = None,
) -> GateDecision:
    """Champion if there is none, or if the candidate beats it by ``min_improvement`` (> 0);
    never while it does not beat ``bar`` (its baseline) when one is given."""
    if candidate is None or not math.isfinite(candidate):
        return GateDecision(CHALLENGER, f"candidate has no {metric}", champion_version, champion)
    if bar is not None:
        beats = candidate > bar.value if direction == "max" else candidate < bar.value
        if not beats:
            reason = (
                f"{metric} {candidate:.4g} does not beat its baseline ({bar.name}) "
                f"{bar.value:.4g}, and registry.require_beats_baseline is set"
            )
            return GateDecision(CHALLENGER, reason, champion_version, champion)
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
