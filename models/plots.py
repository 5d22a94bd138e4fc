"""PNG figures people would rather see than numbers: curves, reconstructions, embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tessera.models.palette import CLASS_PALETTE, class_cmap, legend_handles
from tessera.tasks.store.format import IGNORE


def _class_colours() -> dict[str, Any]:
    """imshow/scatter arguments that draw class id c in the palette's colour c."""
    return {"cmap": class_cmap(), "vmin": -0.5, "vmax": len(CLASS_PALETTE) - 0.5}


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


def _show(img: np.ndarray, bounds: tuple[float, float] | None = None) -> np.ndarray:
    """A 2-D map, or the first channel (first three as RGB), stretched to ``bounds`` (default:
    its own 2-98 % range)."""
    if img.ndim == 2:
        arr = img
    else:
        arr = img[:3].transpose(1, 2, 0) if img.shape[0] >= 3 else img[0]
    lo, hi = bounds if bounds is not None else np.percentile(arr, [2, 98])
    return np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1)


def plot_reconstructions(
    columns: dict[str, np.ndarray],
    path: Path,
    title: str,
    label_keys: tuple[str, ...] = (),
    overlay_on: str | None = None,
    class_names: Sequence[str] = (),
) -> list[str]:
    """A grid: one row per tile, one column per entry of ``columns`` ((N, C, H, W) or (N, H, W)).

    Columns named in ``label_keys`` are class maps in the class palette, drawn over
    ``overlay_on`` when given, with a legend of ``class_names``. Returns the legend's labels.
    """
    plt = _pyplot()
    n = min(len(v) for v in columns.values())
    fig, axes = plt.subplots(n, len(columns), figsize=(2.2 * len(columns), 2.2 * n), squeeze=False)
    for j, (name, arr) in enumerate(columns.items()):
        for i in range(n):
            ax = axes[i][j]
            if name in label_keys:
                alpha = 1.0
                if overlay_on in columns:  # class colours over the image
                    ax.imshow(_show(columns[overlay_on][i]), cmap="gray")
                    alpha = 0.5
                known = np.ma.masked_equal(arr[i], IGNORE)  # unknown pixels stay blank
                ax.imshow(known, interpolation="nearest", alpha=alpha, **_class_colours())
            else:
                ax.imshow(_show(arr[i]), cmap="gray")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name)
    labels: list[str] = []
    if label_keys and class_names:
        legend = fig.legend(
            handles=legend_handles(class_names), loc="lower center", ncol=len(class_names)
        )
        labels = [t.get_text() for t in legend.get_texts()]
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
    return labels


def plot_embedding(
    points: dict[str, np.ndarray],
    colours: dict[str, np.ndarray],
    path: Path,
    title: str,
    legend_names: dict[str, list[str]] | None = None,
) -> None:
    """2D embeddings (one row per method) coloured by each entry of ``colours`` (one column).

    Entries < 0 in a colouring (unknown label) are drawn grey; ``legend_names`` names the
    values of a colouring (e.g. class names).
    """
    plt = _pyplot()
    rows, cols = len(points), len(colours)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False)
    for i, (method, xy) in enumerate(points.items()):
        for j, (name, c) in enumerate(colours.items()):
            ax = axes[i][j]
            known = c >= 0
            ax.scatter(*xy[~known].T, s=8, c="lightgrey")
            sc = ax.scatter(*xy[known].T, s=8, c=c[known], **_class_colours())
            if known.any():
                handles, texts = sc.legend_elements()
                names = (legend_names or {}).get(name)
                if names:  # legend_elements lists the values present, in order
                    texts = [names[v] for v in np.unique(c[known])]
                ax.legend(handles, texts, fontsize=6, loc="best", title=name)
            ax.set_title(f"{method}: {name}")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_bars(values: np.ndarray, path: Path, title: str, ylabel: str) -> None:
    """One bar per entry (e.g. KL per latent dimension)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(values)), 3.5))
    ax.bar(np.arange(len(values)), values)
    ax.set_xlabel("dimension")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """A confusion matrix with counts (rows: true class, columns: predicted)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def plot_samples(samples: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Generated tiles: one row per class, one column per sample, on one shared grey scale
    (so brightness differences between classes show)."""
    plt = _pyplot()
    shown = np.concatenate([v[:, :3] if v.shape[1] >= 3 else v[:, :1] for v in samples.values()])
    lo, hi = np.percentile(shown, [2, 98])
    n = min(len(v) for v in samples.values())
    fig, axes = plt.subplots(len(samples), n, figsize=(1.6 * n, 1.7 * len(samples)), squeeze=False)
    for i, (name, arr) in enumerate(samples.items()):
        for j in range(n):
            axes[i][j].imshow(_show(arr[j], (float(lo), float(hi))), cmap="gray")
            axes[i][j].set_axis_off()
        axes[i][0].set_title(name, loc="left", fontsize=9)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_orthogonal_overlays(
    image: Sequence[np.ndarray],
    rows: Mapping[str, Sequence[np.ndarray]],
    path: Path,
    title: str,
    class_names: Sequence[str],
    panels: Sequence[str] = ("sagittal", "coronal", "axial"),
) -> None:
    """Panels of a scene (three orthogonal slices of a volume, or one map of a raster), each
    indexed (i, j) with i to the right and j up, one row per class map in ``rows`` drawn over
    the image (class 0 and IGNORE clear), with the classes' legend. One panel: the rows side
    by side."""
    plt = _pyplot()
    n, m = len(panels), len(rows)
    shape = (m, n) if n > 1 else (1, m)
    fig, grid = plt.subplots(*shape, figsize=(3.4 * shape[1], 3.4 * shape[0]), squeeze=False)
    axes = grid if n > 1 else grid.T
    lo, hi = (
        float(v) for v in np.percentile(np.concatenate([s.ravel() for s in image]), (1, 99.5))
    )
    for r, (name, maps) in enumerate(rows.items()):
        for c, (img, classes) in enumerate(zip(image, maps, strict=True)):
            ax = axes[r, c]
            ax.imshow(img.T, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            shown = np.ma.masked_where((classes == 0) | (classes == IGNORE), classes).T
            ax.imshow(
                shown, origin="lower", alpha=0.45, interpolation="nearest", **_class_colours()
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: {panels[c]}", fontsize=9)
    fig.legend(handles=legend_handles(class_names)[1:], loc="lower center", ncol=len(class_names))
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
