"""PNG figures people would rather see than numbers: loss curves and reconstructions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.labels import IGNORE


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: object, path: Path) -> None:
    """Write a figure through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")  # type: ignore[attr-defined]
    tmp.replace(path)


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """One line per metric in ``history`` (epoch on the x axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in sorted(history.items()):
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def _show(img: np.ndarray) -> np.ndarray:
    """First channel (or first three as RGB), stretched to its 2-98 % range."""
    arr = img[:3].transpose(1, 2, 0) if img.shape[0] >= 3 else img[0]
    lo, hi = np.percentile(arr, [2, 98])
    return np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1)


def plot_reconstructions(
    columns: dict[str, np.ndarray], path: Path, title: str, label_keys: tuple[str, ...] = ()
) -> None:
    """A grid: one row per tile, one column per entry of ``columns`` ((N, C, H, W) or (N, H, W))."""
    plt = _pyplot()
    n = min(len(v) for v in columns.values())
    fig, axes = plt.subplots(n, len(columns), figsize=(2.2 * len(columns), 2.2 * n), squeeze=False)
    for j, (name, arr) in enumerate(columns.items()):
        for i in range(n):
            ax = axes[i][j]
            if name in label_keys:
                known = np.ma.masked_equal(arr[i], IGNORE)  # unknown pixels stay blank
                ax.imshow(known, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            else:
                ax.imshow(_show(arr[i]), cmap="gray")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
