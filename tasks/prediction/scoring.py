"""Scores of maps stitched over whole scenes as ``tessera predict`` stitches them.

Stitching must not lose accuracy: the full-resolution map scored on the test tiles' pixels
against their labels (``stitched_*``). And a model must work on data it has never seen: the
map of each whole scene of the held-out sources against its labels (``heldout_*``).

The pixels are those of the tile Dice (valid and labelled pixels of the split's tiles), so the
two figures compare like with like: a model applied window by window with overlap and
blending, against the same model applied to each tile on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tessera.models.run.run_config import RunConfig
from tessera.models.scoring.image_metrics import SegmentationScores
from tessera.tasks.evaluation.heldout import (
    HeldOut,
    baseline_heldout_scores,
    named_scores,
    raster_view,
    volume_view,
)
from tessera.tasks.prediction.apply import in_model_order
from tessera.tasks.prediction.model import batch_predictor, checkpoint_model
from tessera.tasks.prediction.predict_options import Blend
from tessera.tasks.prediction.raster_maps import StripReader, image_pieces, scene_valid
from tessera.tasks.prediction.stitching import Stitching, stitch_plane
from tessera.tasks.sources.catalog import read_catalog
from tessera.tasks.store.format import IGNORE
from tessera.tasks.store.reader import TileStore
from tessera.tasks.tiling.scene import VolumeScene, open_scene

PREFIX = "stitched_"
PIXEL_CHUNK = 1 << 20  # pixels per call of a per-pixel baseline's predict


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
    stitching: Stitching,
) -> dict[int, np.ndarray]:
    """The stitched classes of each tile of one plane, stitched over the whole plane."""
    height, width = scene.plane_shape
    classes = plane_classes(scene, plane, predict, normalise, k, stitching)
    size = stitching.size
    found, rows = _plane_tiles(tiles, size)
    for i, r, c in rows:
        h, w = min(size, height - r), min(size, width - c)
        found[i][:h, :w] = classes[r : r + h, c : c + w]
    return found


@dataclass(frozen=True)
class SceneScoring:
    """What whole-scene scores read, and how they stitch, as ``tessera predict`` does.

    Args:
        run: The evaluated run.
        checkpoint: Its checkpoint.
        catalog: The catalogue of the scenes.
        base: The folder the catalogue's paths are relative to.
        overlap: The share of a window that its neighbours overlap.
        blend: How overlapping windows are weighted.
    """

    run: RunConfig
    checkpoint: Path
    catalog: Path
    base: Path
    overlap: float = 0.25
    blend: Blend = "gaussian"

    def stitching(self, window: int) -> Stitching:
        """Windows of the model's ``window`` size, stitched as ``tessera predict`` would."""
        return Stitching.for_window(window, self.overlap, self.blend)


def stitched_scores(scoring: SceneScoring, split: str = "test") -> dict[str, float]:
    """``stitched_dice_<c>``, ``stitched_iou_<c>`` and their means for a per-pixel model;
    {} for any other model, or a store whose scenes the catalogue does not list."""
    run, catalog, base = scoring.run, scoring.catalog, scoring.base
    model = checkpoint_model(run, scoring.checkpoint, run.experiment)
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
    stitching = scoring.stitching(d.window)
    scores = SegmentationScores(k)
    for scene_id, tiles in chosen.groupby("scene_id"):
        scene = open_scene(records[str(scene_id)], base, d.axis)
        try:
            fitted = d.for_image(image_pieces(scene))  # a per-image scheme: this scene's
            for plane, in_plane in tiles.groupby(tiles["slice"].clip(lower=0)):
                found = _score_plane(
                    scene, int(plane), in_plane, predict, fitted.normalise, k, stitching
                )
                batch = store.get_batch(list(found))
                label = np.where(batch["valid"], batch["label"], IGNORE)
                pred = np.stack([found[i] for i in found])
                scores.update(torch.from_numpy(pred).long(), torch.from_numpy(label).long())
        finally:
            scene.close()
    return {f"{PREFIX}{key}": v for key, v in scores.scores().items()}


def plane_classes(
    scene: Any, plane: int, predict: Any, normalise: Any, k: int, stitching: Stitching
) -> np.ndarray:
    """One whole plane's classes (h, w), stitched window by window as ``tessera predict``
    stitches it."""
    height, width = scene.plane_shape
    out = np.zeros((height, width), dtype=np.uint8)

    read = StripReader(scene, normalise, plane)

    def write(top: int, probs: np.ndarray) -> None:
        out[top : top + probs.shape[1]] = probs.argmax(axis=0)

    stitch_plane(read, predict, write, (height, width), k, stitching)
    return out


def heldout_scores(
    scoring: SceneScoring, sources: list[str], pixel_baseline: Any = None
) -> HeldOut:
    """The held-out scores of a per-pixel model over every labelled scene of ``sources``
    in the catalogue, pixel counts pooled; empty for no sources or another kind of model.
    A fitted ``pixel_baseline`` (the evaluation's forest) is scored on the same pixels, given
    the same normalised bands as the model."""
    if not sources:
        return HeldOut()
    run, catalog, base = scoring.run, scoring.catalog, scoring.base
    model = checkpoint_model(run, scoring.checkpoint, run.experiment)
    d = model.descriptor
    if d.output != "class_logits":
        return HeldOut()
    if not catalog.is_file():
        raise FileNotFoundError(f"{catalog}: no catalogue for the held-out sources (run ingest)")
    records = [r for r in read_catalog(catalog) if r.source in sources]
    missing = sorted(set(sources) - {r.source for r in records})
    if missing:
        raise ValueError(f"{catalog}: held-out source(s) {missing} not catalogued")
    k = len(d.class_names)
    predict = batch_predictor(model, "cpu", softmax=True)
    stitching = scoring.stitching(d.window)
    scores, baseline = SegmentationScores(k), SegmentationScores(k)
    per_source = {name: SegmentationScores(k) for name in sources}
    found = HeldOut()
    for rec in records:
        if rec.label() is None:
            raise ValueError(f"{rec.scene_id}: held-out source {rec.source} has no labels")
        if list(rec.class_names) != list(d.class_names):
            raise ValueError(
                f"{rec.scene_id}: held-out source {rec.source} has classes "
                f"{list(rec.class_names)}, but {d.experiment} predicts {list(d.class_names)}"
            )
        order = d.band_order(rec.band_names, rec.kind, rec.scene_id)
        scene = open_scene(in_model_order(rec, order), base, d.axis)
        try:
            fitted = d.for_image(image_pieces(scene))
            preds, labels = [], []
            for plane in range(scene.n_planes):
                pred = plane_classes(scene, plane, predict, fitted.normalise, k, stitching)
                height, width = scene.plane_shape
                label = scene.read_label(plane, 0, 0, height, width)
                if label is None:
                    raise ValueError(f"{rec.scene_id}: held-out source {rec.source} has no labels")
                values, ok = scene_valid(scene, 0, 0, height, width, plane)
                known = np.where(ok, label, IGNORE).astype(np.int64)
                for meter in (scores, per_source[rec.source]):
                    meter.update(torch.from_numpy(pred).long(), torch.from_numpy(known))
                if pixel_baseline is not None:
                    rf_pred = pixel_classes(pixel_baseline, fitted.normalise(values, ok), ok)
                    baseline.update(torch.from_numpy(rf_pred), torch.from_numpy(known))
                preds.append(pred)
                labels.append(known.astype(np.uint8))
            if isinstance(scene, VolumeScene):
                stack = lambda planes: np.stack(planes, axis=d.axis)  # noqa: E731
                image = np.asarray(scene.array[0], dtype=np.float32)
                found.views.append(volume_view(rec.scene_id, image, stack(labels), stack(preds)))
            else:
                shown = np.where(ok, pred, IGNORE)
                found.views.append(raster_view(rec.scene_id, values, ok, labels[0], shown))
        finally:
            scene.close()
        found.scenes.append(rec.scene_id)
        lab = rec.label()
        found.labels.append(str(lab.path or ", ".join(lab.paths)) if lab else "")
    found.metrics = named_scores(scores, d.class_names)
    for name, meter in per_source.items():
        found.metrics |= named_scores(meter, d.class_names, name)
    if pixel_baseline is not None:
        found.metrics |= baseline_heldout_scores(baseline, d.class_names)
    return found


def pixel_classes(
    classifier: Any, x: np.ndarray, valid: np.ndarray, chunk: int = PIXEL_CHUNK
) -> np.ndarray:
    """A per-pixel classifier's classes over a (C, h, w) plane of normalised bands (IGNORE
    where not ``valid``), predicted ``chunk`` pixels at a time."""
    out = np.full(valid.shape, IGNORE, dtype=np.int64)
    rows = x[:, valid].T
    found = [classifier.predict(rows[i : i + chunk]) for i in range(0, len(rows), chunk)]
    if found:
        out[valid] = np.concatenate(found)
    return out
