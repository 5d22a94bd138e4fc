"""Class-coloured plots: the palette's colours, and a legend that names the classes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tessera.models.palette import CLASS_PALETTE
from tessera.models.plots import plot_reconstructions
from tessera.tasks.store.format import IGNORE


def test_class_maps_are_drawn_in_the_palette_with_a_named_legend(tmp_path):
    label = np.zeros((2, 16, 16), np.int64)
    label[:, :, 8:] = 3
    label[:, 0, 0] = IGNORE
    path = tmp_path / "seg.png"
    names = ["clear", "cloud", "cirrus", "water"]
    shown = plot_reconstructions({"label": label}, path, "t", ("label",), None, names)
    assert shown == names
    pixels = {tuple(p) for p in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}
    assert CLASS_PALETTE[0] in pixels and CLASS_PALETTE[3] in pixels  # clear and water
    assert CLASS_PALETTE[1] in pixels  # cloud is in no pixel: only the legend shows it
    unnamed = plot_reconstructions({"label": label}, tmp_path / "bare.png", "t", ("label",))
    bare = {
        tuple(p)
        for p in np.asarray(Image.open(tmp_path / "bare.png").convert("RGB")).reshape(-1, 3)
    }
    assert unnamed == [] and CLASS_PALETTE[1] not in bare
