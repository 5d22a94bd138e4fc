"""Sliding windows over a plane, blended and written a band of rows at a time (out of core).

Windows of ``size`` pixels step by ``size - overlap``; the last row and column of windows are
moved back so they end at the plane's edge, so every window lies inside the plane (a plane
smaller than a window is one window, padded). Each window's scores are weighted by a
blending map (Gaussian or constant) and summed; a row of the output is divided by its summed
weight and written as soon as no later window covers it. Only ``size`` rows of scores are
held, whatever the plane's height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tessera.tasks.prediction.predict_options import Blend

Reader = Callable[[int, int, int, int], np.ndarray]  # (row, col, height, width) -> (C, h, w)
Predictor = Callable[[np.ndarray], np.ndarray]  # (N, C, s, s) float32 -> (N, K, s, s)
Writer = Callable[[int, np.ndarray], None]  # (first row, (K, rows, W) float32)

GAUSSIAN_SIGMA = 0.125  # of the window, as MONAI's sliding_window_inference


@dataclass(frozen=True)
class Stitching:
    """How a plane is mapped window by window.

    Args:
        size: Window side in pixels.
        overlap: Pixels shared by neighbouring windows (0 ≤ overlap < size).
        blend: How overlapping windows are weighted: gaussian or constant.
        batch_size: Windows per call of the model.
    """

    size: int
    overlap: int
    blend: Blend = "gaussian"
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.size:
            raise ValueError(
                f"overlap {self.overlap} must be at least 0 and below the window {self.size}"
            )

    @property
    def stride(self) -> int:
        """Pixels from one window to the next."""
        return self.size - self.overlap

    @classmethod
    def for_window(
        cls, size: int, overlap_share: float, blend: Blend = "gaussian", batch_size: int = 16
    ) -> Stitching:
        """Windows of ``size`` overlapping by ``overlap_share`` of it (at most size - 1)."""
        return cls(size, min(round(overlap_share * size), size - 1), blend, batch_size)


def probability_bytes(scores: np.ndarray) -> np.ndarray:
    """Probabilities as the maps store them, uint8 p·255. Rounded, two classes can tie: a
    class map takes the argmax of the scores themselves."""
    return np.rint(np.clip(scores, 0, 1) * 255).astype(np.uint8)


def window_origins(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, the last one ending at the edge."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return [*starts, length - size]


def blend_weights(size: int, blend: Blend) -> np.ndarray:
    """The (size, size) weight of a window's pixels: ones, or a Gaussian centred on the window
    (σ = 0.125·size), floored at its smallest positive value so that no pixel weighs 0."""
    if blend == "constant":
        return np.ones((size, size), dtype=np.float32)
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * (GAUSSIAN_SIGMA * size) ** 2))
    w = np.outer(g, g)
    return np.maximum(w / w.max(), w[w > 0].min()).astype(np.float32)


def _padded(window: np.ndarray, size: int) -> np.ndarray:
    """A window read at the edge of a plane smaller than ``size``, zero-padded to it."""
    c, h, w = window.shape
    if h == size and w == size:
        return window
    out = np.zeros((c, size, size), dtype=window.dtype)
    out[:, :h, :w] = window
    return out


def _batches(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def stitch_plane(
    read: Reader,
    predict: Predictor,
    write: Writer,
    shape: tuple[int, int],
    channels_out: int,
    stitching: Stitching,
    row_range: tuple[int, int] | None = None,
) -> None:
    """Predict a ``height`` × ``width`` plane window by window and ``write`` the blended scores.

    Args:
        read: Reads a window of the input as float32 (C, h, w); h, w < size only when the
            plane itself is smaller than a window.
        predict: Scores of a batch of windows, (N, K, size, size) from (N, C, size, size).
        write: Receives each finished band of rows, in order: its first row and the
            (K, rows, width) blended scores, once per row of windows (a progress bar's step).
            It may run while ``read`` fetches the next batch in another thread, so it must
            not read the input files itself
            (:class:`~tessera.tasks.prediction.raster_maps.StripReader` hands back the rows).
        shape: Rows and columns of the plane.
        channels_out: K, the score channels ``predict`` returns.
        stitching: The windows: size, overlap, blending, batch size.
        row_range: Only the rows [first, stop) of the plane, for one band of a plane mapped in
            bands: the rows of windows that reach them, on the plane's own window grid, in the
            same order, so that every row of the band gets exactly the scores it gets when the
            whole plane is mapped. Rows outside the band may also be written; the writer
            drops them.
    """
    (height, width), size = shape, stitching.size
    blend, batch_size = stitching.blend, stitching.batch_size
    stride = stitching.stride
    rows, cols = window_origins(height, size, stride), window_origins(width, size, stride)
    weight = blend_weights(size, blend)
    h_win, w_win = min(size, height), min(size, width)
    if row_range is not None:  # the rows of windows that cover some row of the band
        rows = [r for r in rows if r < row_range[1] and r + h_win > row_range[0]]
    span = size  # rows held: those of the current row of windows
    scores = np.zeros((channels_out, span, width), dtype=np.float32)
    weights = np.zeros((span, width), dtype=np.float32)
    top = rows[0]  # the plane row that scores[:, 0] holds

    def windows(r: int, batch: list[int]) -> np.ndarray:
        return np.stack([_padded(read(r, c, h_win, w_win), size) for c in batch])

    # every batch, in order; the reader runs one batch ahead, across rows too, so ``write``
    # may run while it reads (``read`` guards the files, see raster.StripReader)
    jobs = [(i, r, batch) for i, r in enumerate(rows) for batch in _batches(cols, batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-read") as reader:
        pending = reader.submit(windows, jobs[0][1], jobs[0][2])
        for n, (i, r, batch) in enumerate(jobs):
            x = pending.result()
            if n + 1 < len(jobs):
                pending = reader.submit(windows, jobs[n + 1][1], jobs[n + 1][2])
            y = np.asarray(predict(x), dtype=np.float32)
            if y.shape != (len(batch), channels_out, size, size):
                raise ValueError(
                    f"the model returned {y.shape}, expected "
                    f"{(len(batch), channels_out, size, size)}"
                )
            for c, out in zip(batch, y, strict=True):
                wv = weight[:h_win, :w_win]
                block = out[:, :h_win, :w_win] * wv
                scores[:, r - top : r - top + h_win, c : c + w_win] += block
                weights[r - top : r - top + h_win, c : c + w_win] += wv
            if n + 1 < len(jobs) and jobs[n + 1][0] == i:
                continue  # more batches of this row of windows
            # rows no later window adds to
            done = (rows[i + 1] if i + 1 < len(rows) else r + h_win) - top
            write(top, scores[:, :done] / weights[None, :done])
            scores = np.roll(scores, -done, axis=1)
            weights = np.roll(weights, -done, axis=0)
            scores[:, span - done :] = 0
            weights[span - done :] = 0
            top += done
