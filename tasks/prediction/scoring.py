"""Stitching must not lose accuracy: the full-resolution map, stitched over whole scenes as
``tessera predict`` stitches it, scored on the test tiles' pixels against their labels.

The pixels are those of the tile Dice (valid and labelled pixels of the split's tiles), so the
two figures compare like with like: a model applied window by window with overlap and
blending, against the same model applied to each tile on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tessera.models.config import RunConfig
from tessera.models.metrics import SegmentationScores
from tessera.tasks.prediction.model import batch_predictor, checkpoint_model
from tessera.tasks.prediction.options import Blend
from tessera.tasks.prediction.raster import scene_valid
from tessera.tasks.prediction.stitching import stitch_plane
from tessera.tasks.sources.catalog import read_catalog
from tessera.tasks.store.format import IGNORE
from tessera.tasks.store.reader import TileStore
from tessera.tasks.tiling.scene import open_scene

PREFIX = "stitched_"


def _plane_tiles(
    tiles: pd.DataFrame, size: int
) -> tuple[dict[int, np.ndarray], list[tuple[int, int, int]]]:
    """Empty predicted tiles (IGNORE) keyed by store row, and (row, row_off, col_off)."""
    rows = [(int(i), int(r), int(c)) for i, r, c in zip(
        tiles.index, tiles["row_off"], tiles["col_off"], strict=True)]  # fmt: skip
    return {i: np.full((size, size), IGNORE, np.uint8) for i, _, _ in rows}, rows


def _score_plane(
    scene: Any,
    plane: int,
    tiles: pd.DataFrame,
    predict: Any,
    normalise: Any,
    k: int,
    size: int,
    overlap: int,
    blend: Blend,
) -> dict[int, np.ndarray]:
    """The stitched classes of each tile of one plane, stitched over the whole plane."""
    height, width = scene.plane_shape
    found, rows = _plane_tiles(tiles, size)

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        return normalise(*scene_valid(scene, r, c, h, w, plane))

    def write(top: int, probs: np.ndarray) -> None:
        classes = probs.argmax(axis=0).astype(np.uint8)
        bottom = top + classes.shape[0]
        for i, r, c in rows:
            lo, hi = max(r, top), min(r + size, bottom, height)
            if lo < hi:
                w = min(size, width - c)
                found[i][lo - r : hi - r, :w] = classes[lo - top : hi - top, c : c + w]

    stitch_plane(read, predict, write, height, width, size, overlap, k, blend)
    return found


def stitched_scores(
    run: RunConfig,
    checkpoint: Path,
    catalog: Path,
    base: Path,
    split: str = "test",
    overlap: float = 0.25,
    blend: Blend = "gaussian",
) -> dict[str, float]:
    """``stitched_dice_<c>``, ``stitched_iou_<c>`` and their means for a per-pixel model;
    {} for any other model, or a store whose scenes the catalogue does not list."""
    model = checkpoint_model(run, checkpoint, run.experiment)
    d = model.descriptor
    if d.output != "class_logits" or not catalog.is_file():
        return {}
    records = {r.scene_id: r for r in read_catalog(catalog)}
    store = TileStore.open(run.store)
    idx = store.index
    chosen = idx[
        (idx["split"] == split) & idx["source"].isin(run.dataset.sources) & idx["has_label"]
    ]
    if chosen.empty or not set(chosen["scene_id"]) <= set(records):
        return {}
    k = len(d.class_names)
    predict = batch_predictor(model, "cpu", softmax=True)
    tile_overlap = min(round(overlap * d.window), d.window - 1)
    scores = SegmentationScores(k)
    for scene_id, tiles in chosen.groupby("scene_id"):
        scene = open_scene(records[str(scene_id)], base, d.axis)
        try:
            for plane, in_plane in tiles.groupby(tiles["slice"].clip(lower=0)):
                found = _score_plane(
                    scene, int(plane), in_plane, predict, d.normalise, k, d.window,
                    tile_overlap, blend,
                )  # fmt: skip
                batch = store.get_batch(list(found))
                label = np.where(batch["valid"], batch["label"], IGNORE)
                pred = np.stack([found[i] for i in found])
                scores.update(torch.from_numpy(pred).long(), torch.from_numpy(label).long())
        finally:
            scene.close()
    return {f"{PREFIX}{key}": v for key, v in scores.scores().items()}
