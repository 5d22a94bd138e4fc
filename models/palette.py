"""Class colours: one palette for every class-coloured plot and class-map GeoTIFF, so the
legend of a PNG and the colour table of a map agree (Tableau 10; index = class id)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CLASS_PALETTE: list[tuple[int, int, int]] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def class_rgb(c: int) -> tuple[float, float, float]:
    """Class ``c``'s colour as matplotlib's 0-1 RGB (the palette repeats after ten)."""
    r, g, b = CLASS_PALETTE[c % len(CLASS_PALETTE)]
    return r / 255, g / 255, b / 255


def class_cmap() -> Any:
    """A matplotlib colormap of the palette: draw class ids with ``vmin=-0.5`` and
    ``vmax=len(CLASS_PALETTE) - 0.5``."""
    from matplotlib.colors import ListedColormap

    return ListedColormap([class_rgb(c) for c in range(len(CLASS_PALETTE))])


def legend_handles(names: Sequence[str]) -> list[Any]:
    """One coloured patch per class, labelled with its name."""
    from matplotlib.patches import Patch

    return [Patch(color=class_rgb(c), label=name) for c, name in enumerate(names)]
