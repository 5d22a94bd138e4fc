"""Intensity normalisation schemes, by name: from the tile store's statistics, or per image.

The schemes follow nnU-Net (Isensee et al., 2021), which fixed them after measuring many:

- ``zscore``: per band, the training store's mean and standard deviation.
- ``percentile``: per band, the training store's 2nd to 98th percentile range.
- ``image_zscore``: per image, per band, the mean and standard deviation of the image's own
  foreground (valid pixels where any band is non-zero: the brain of a skull-stripped MRI);
  the background is 0. nnU-Net's scheme for MRI, whose intensities have no physical unit:
  another scanner, or another averaging of a template, has another scale.
- ``image_percentile``: per image, per band, the image's own 2nd to 98th percentile range over
  its valid pixels (a raster scene's own radiometry: another date, sensor or haze).
- ``ct``: values clipped to the training store's 0.5th and 99.5th percentiles, then z-scored
  with its mean and standard deviation (nnU-Net's CT scheme; Hounsfield units are physical,
  so one set of statistics serves every scan). Tessera takes them over the store's valid
  voxels: nnU-Net takes them over its labelled foreground.

Per-image statistics are computed by the same code (:class:`ImageStats`) at training time,
over the tiles of each scene in the store, and at prediction time, over the whole input. The
pixels differ a little: the store leaves out slices beside slab borders and tiles under its
valid fraction, overlapping tiles count twice, and an input past 16 Mi pixels is read one
strip in k.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from tessera.tasks.store.stats import BandStats

Normalisation = Literal["none", "zscore", "percentile", "image_zscore", "image_percentile", "ct"]
PER_IMAGE: frozenset[str] = frozenset({"image_zscore", "image_percentile"})
CT_RANGE = (0.5, 99.5)  # percentiles the ct scheme clips to


def per_image(how: str) -> bool:
    """Whether ``how`` takes its statistics from each image rather than the store."""
    return how in PER_IMAGE


def foreground_only(how: str) -> bool:
    """Whether ``how`` normalises the foreground only, leaving the background at 0."""
    return how == "image_zscore"


def _zscore(stats: dict[str, dict[str, int | float]], bands: list[str]) -> tuple[list, list]:
    return (
        [float(stats[b]["mean"]) for b in bands],
        [float(stats[b]["std"] or 1.0) for b in bands],
    )


def normalisation_params(
    stats: dict[str, dict[str, int | float]], bands: list[str], how: str
) -> tuple[list[float], list[float]]:
    """Per band (shift, scale) of ``(x - shift) / scale`` from statistics of
    :meth:`BandStats.summary`: z-score by mean and std (``zscore``, ``image_zscore``, ``ct``),
    or the 2nd to 98th percentile range; a zero spread divides by 1."""
    if how in ("zscore", "image_zscore", "ct"):
        return _zscore(stats, bands)
    return (
        [float(stats[b]["p2"]) for b in bands],
        [float((stats[b]["p98"] - stats[b]["p2"]) or 1.0) for b in bands],
    )


def clip_bounds(
    stats: dict[str, dict[str, int | float]], bands: list[str], how: str
) -> list[list[float]] | None:
    """Per band [low, high] the values are clipped to first (``ct``), else None."""
    if how != "ct":
        return None
    lo, hi = (f"p{q:g}".replace(".", "_") for q in CT_RANGE)
    missing = [b for b in bands if lo not in stats[b] or hi not in stats[b]]
    if missing:
        raise ValueError(
            f"normalisation ct needs the store's {CT_RANGE} percentiles of {missing}: "
            "this store predates them (run `tessera tile` again)"
        )
    return [[float(stats[b][lo]), float(stats[b][hi])] for b in bands]


def mask_for(values: np.ndarray, valid: np.ndarray, how: str) -> np.ndarray:
    """The pixels ``how`` normalises: ``valid`` (…, h, w), less the background where the
    scheme leaves it (all bands zero), for values (…, C, h, w)."""
    if foreground_only(how):
        return valid & (values != 0).any(axis=-3)
    return valid


class ImageStats:
    """Per-band statistics of one image, fed in pieces (tiles, slices or strips)."""

    def __init__(self, bands: list[str], how: str) -> None:
        self.bands, self.how = bands, how
        self._stats = {b: BandStats(exact=False) for b in bands}

    def update(self, values: np.ndarray, valid: np.ndarray) -> None:
        """Add a piece: values (…, C, h, w) and valid (…, h, w)."""
        chosen = mask_for(values, valid, self.how)
        for i, b in enumerate(self.bands):
            band = np.take(values, i, axis=-3)
            self._stats[b].update(np.asarray(band[chosen], dtype=np.float32))

    def params(self) -> tuple[list[float], list[float]]:
        """(shift, scale) of this image; an image without any such pixel gets (0, 1)."""
        summary = {b: s.summary() for b, s in self._stats.items()}
        if any(s["count"] == 0 for s in summary.values()):
            return [0.0] * len(self.bands), [1.0] * len(self.bands)
        return normalisation_params(summary, self.bands, self.how)


def image_params(
    pieces: Iterable[tuple[np.ndarray, np.ndarray]], bands: list[str], how: str
) -> tuple[list[float], list[float]]:
    """(shift, scale) of one image from its pieces of (values, valid)."""
    acc = ImageStats(bands, how)
    for values, valid in pieces:
        acc.update(values, valid)
    return acc.params()


def apply(
    values: np.ndarray,
    valid: np.ndarray,
    shift: np.ndarray,
    scale: np.ndarray,
    how: str,
    clip: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(x - shift) / scale`` (after clipping to ``clip`` (C, 2) where given) on the pixels
    the scheme normalises, 0 elsewhere; values (…, C, h, w), shift and scale (C, 1, 1).
    ``out``: a float32 array of the values' shape to write into, which is returned."""
    x = values.astype(np.float32)
    if clip is not None:
        bounds = np.asarray(clip, dtype=np.float32)
        x = np.clip(x, bounds[:, 0, None, None], bounds[:, 1, None, None], out=x)
    keep = np.expand_dims(mask_for(values, valid, how), -3)
    if out is None:
        out = np.empty(x.shape, np.float32)
    if np.result_type(x, shift, scale) == np.float32:  # the same float32 steps, in place
        np.subtract(x, shift, out=out)
        np.divide(out, scale, out=out)
    else:  # computed wider and rounded once, as written
        np.copyto(out, (x - shift) / scale, casting="same_kind")
    np.copyto(out, np.float32(0.0), where=~keep)
    return out
