"""Stitched windows equal the analytic answer at every pixel, edges and overlaps included."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.tasks.prediction.stitching import (
    Stitching,
    blend_weights,
    stitch_plane,
    window_origins,
)


def _stitch(image: np.ndarray, predict, k: int, size: int, overlap: int, blend: str):
    """Stitch ``image`` (C, H, W) held in memory; also returns the written row bands."""
    _, h, w = image.shape
    out = np.full((k, h, w), np.nan, dtype=np.float32)
    bands: list[tuple[int, int]] = []

    def read(r: int, c: int, hh: int, ww: int) -> np.ndarray:
        return image[:, r : r + hh, c : c + ww].astype(np.float32)

    def write(r: int, block: np.ndarray) -> None:
        bands.append((r, block.shape[1]))
        out[:, r : r + block.shape[1]] = block

    stitch_plane(read, predict, write, (h, w), k, Stitching(size, overlap, blend, batch_size=3))
    return out, bands


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize(("h", "w"), [(64, 64), (70, 53), (10, 90), (7, 5)])
def test_a_pointwise_model_stitches_to_its_function_of_the_input(blend, h, w):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1000, (3, h, w)).astype(np.float32)

    def model(x: np.ndarray) -> np.ndarray:  # two channels: 2·b0 + 1 and b1 − b2
        return np.stack([2 * x[:, 0] + 1, x[:, 1] - x[:, 2]], axis=1)

    out, bands = _stitch(image, model, 2, 16, 4, blend)
    np.testing.assert_allclose(out[0], 2 * image[0] + 1, rtol=1e-6)
    np.testing.assert_allclose(out[1], image[1] - image[2], rtol=1e-5, atol=1e-3)
    # every row written once, in order, a band of at most one stride at a time
    assert [r for r, _ in bands] == list(np.cumsum([0] + [n for _, n in bands])[:-1])
    assert sum(n for _, n in bands) == h and max(n for _, n in bands) <= 16  # at most a window


def test_pixel_coordinates_come_back_where_they_were():
    h, w = 45, 38
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    out, _ = _stitch(np.stack([rows, cols]), lambda x: x, 2, 16, 5, "gaussian")
    np.testing.assert_allclose(out[0], rows, atol=1e-4)
    np.testing.assert_allclose(out[1], cols, atol=1e-4)


def test_windows_cover_the_axis_and_end_at_its_edge():
    assert window_origins(64, 16, 12) == [0, 12, 24, 36, 48]
    assert window_origins(70, 16, 12) == [0, 12, 24, 36, 48, 54]
    assert window_origins(10, 16, 12) == [0]
    g = blend_weights(16, "gaussian")
    assert g.min() > 0 and g[7:9, 7:9].min() == pytest.approx(g.max())


def test_a_model_answering_the_wrong_shape_is_refused_in_one_line():
    image = np.zeros((1, 20, 20), np.float32)
    with pytest.raises(ValueError, match=r"the model returned \(2, 1, 8, 8\)"):
        _stitch(image, lambda x: x[:, :, :8, :8], 1, 16, 4, "constant")
    with pytest.raises(ValueError, match="overlap 16"):
        _stitch(image, lambda x: x, 1, 16, 16, "constant")


def test_an_overlap_share_becomes_pixels_below_the_window():
    assert Stitching.for_window(64, 0.25, "constant", 8) == Stitching(64, 16, "constant", 8)
    assert Stitching.for_window(16, 0.99).overlap == 15  # at most size - 1: windows step on
    with pytest.raises(ValueError, match="overlap -1 must be at least 0"):
        Stitching(16, -1)
