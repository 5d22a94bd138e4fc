"""Learning curves for the digits benchmark: a metric of a module measured every few epochs
while it trains, drawn against optimiser steps as a PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch


def accuracy(clf: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    """Accuracy of a classifier's argmax on (x, y), in eval mode."""
    clf.eval()
    with torch.no_grad():
        return float((clf(x).argmax(1).numpy() == y).mean())


class MetricCurve(pl.Callback):
    """``measure(module)`` after the first epoch and every ``every`` epochs, as (step, value);
    the module is put back in training mode after each measurement."""

    def __init__(self, measure: Callable[[pl.LightningModule], float], every: int) -> None:
        self.measure, self.every = measure, every
        self.points: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0 or trainer.current_epoch == 0:
            self.points.append((trainer.global_step, self.measure(module)))
            module.train()


def accuracy_curve(pick: str, x: torch.Tensor, y: np.ndarray, every: int) -> MetricCurve:
    """Test accuracy of the module's classifier attribute ``pick``."""
    return MetricCurve(lambda module: accuracy(getattr(module, pick), x, y), every)


def plot_curves(
    curves: dict[str, list[tuple[int, float]]],
    ylabel: str,
    path: Path,
    levels: dict[str, float] | None = None,
) -> None:
    """A metric against optimiser steps, one line per model, and ``levels`` (references that
    do not train) as dashed horizontal lines, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name)
    for name, level in (levels or {}).items():
        ax.axhline(level, linestyle="--", color="grey", label=name)
    ax.set(xlabel="optimiser steps", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
