"""A class map of a whole raster scene: read as ``tessera tile`` reads it, stitched out of core,
written as a Cloud-Optimised GeoTIFF on the scene's exact grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tessera.tasks.prediction.cog import CLASS_NODATA, class_colours, cog_writer
from tessera.tasks.prediction.stitching import Blend, Predictor, stitch_plane
from tessera.tasks.store.stats import valid_values
from tessera.tasks.tiling.scene import RasterScene

Normaliser = Callable[[np.ndarray], np.ndarray]  # (C, h, w) source values -> float32


def predict_raster_classes(
    scene: RasterScene,
    out: Path,
    predict: Predictor,
    normalise: Normaliser,
    class_names: Sequence[str],
    size: int,
    overlap: int,
    blend: Blend = "gaussian",
    batch_size: int = 16,
    tags: dict[str, str] | None = None,
    on_row: Callable[[], None] | None = None,
) -> Path:
    """Write ``out``: the argmax class of the blended scores per pixel, uint8, nodata 255 where
    the input is nodata, NaN or masked; the scene's CRS, transform, width and height.

    Args:
        scene: The scene, opened as ``tessera tile`` opens it (bands stacked on the grid).
        out: The COG to write (replaced only once it is complete).
        predict: Scores (N, K, s, s) of a batch of normalised windows (N, C, s, s).
        normalise: Source values of a window to the model's input units.
        class_names: The K classes, in score order.
        size: Window side in pixels.
        overlap: Pixels shared by neighbouring windows.
        blend: gaussian or constant.
        batch_size: Windows per call of ``predict``.
        tags: Lineage written into the file's metadata.
        on_row: Called after each row of windows.
    """
    height, width = scene.plane_shape
    nodata = scene.rec.nodata

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        window = scene.read(0, r, c, h, w)
        ok = valid_values(window, nodata).all(axis=0)
        return np.where(ok, normalise(window), 0.0).astype(np.float32)

    meta = {f"class_{i}": name for i, name in enumerate(class_names)}
    with cog_writer(
        out,
        scene.grid,
        1,
        "uint8",
        CLASS_NODATA,
        (tags or {}) | meta | {"classes": ",".join(class_names)},
        ["class"],
        class_colours(len(class_names)),
    ) as writer:

        def write(row: int, scores: np.ndarray) -> None:
            classes = scores.argmax(axis=0).astype(np.uint8)
            window = scene.read(0, row, 0, classes.shape[0], width)
            ok = valid_values(window, nodata).all(axis=0)
            mask = scene.read_valid(0, row, 0, classes.shape[0], width)
            if mask is not None:
                ok &= mask
            writer.write(row, np.where(ok, classes, CLASS_NODATA)[None])

        stitch_plane(
            read, predict, write, height, width, size, overlap, len(class_names), blend,
            batch_size, on_row,
        )  # fmt: skip
    return out
