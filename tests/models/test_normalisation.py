import numpy as np
import pytest

from tessera.models.data.normalisation import apply, clip_bounds, image_params
from tessera.models.descriptor import DescriptorError, ModelDescriptor
from tessera.tasks.store.stats import BandStats


def _brain(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (1, 32, 32) 'skull-stripped' image: a bright disc on exact zeros, all valid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 12**2
    x = np.where(disc, rng.normal(100, 20, (32, 32)).clip(1, None), 0).astype(np.float32)
    return x[None], np.ones((32, 32), dtype=bool)


def _descriptor(how: str) -> ModelDescriptor:
    return ModelDescriptor(
        experiment="e", model_type="seg_ae", output="class_logits", source="s",
        source_kind="nifti", bands=["b0"], normalisation=how, shift=[], scale=[], window=32,
        stride=32, axis=2, class_names=["bg", "fg"], nodata=None, store_version=1,
    )  # fmt: skip


def test_image_zscore_uses_the_foreground_only_and_leaves_the_background_at_zero():
    x, valid = _brain()
    d = _descriptor("image_zscore").for_image([(x, valid)])
    out = d.normalise(x, valid)
    fg = x[0] != 0
    assert out[0][fg].mean() == pytest.approx(0, abs=1e-4)
    assert out[0][fg].std() == pytest.approx(1, abs=1e-3)
    assert (out[0][~fg] == 0).all()
    # the store-wide z-score of the same image would count the zeros: another shift
    assert d.shift[0] == pytest.approx(x[0][fg].mean(), rel=1e-5)
    assert d.shift[0] > x.mean() * 1.5


def test_image_zscore_is_blind_to_the_scanners_intensity_scale():
    x, valid = _brain()
    a = _descriptor("image_zscore").for_image([(x, valid)]).normalise(x, valid)
    y = x * 0.37  # another scanner, or another template's scale
    b = _descriptor("image_zscore").for_image([(y, valid)]).normalise(y, valid)
    assert np.allclose(a, b, atol=1e-4)


def test_image_statistics_do_not_depend_on_how_the_image_is_cut():
    x, valid = _brain()
    whole = image_params([(x, valid)], ["b0"], "image_percentile")
    strips = image_params(
        [(x[:, r : r + 5], valid[r : r + 5]) for r in range(0, 32, 5)], ["b0"], "image_percentile"
    )
    batch = image_params([(x[None], valid[None])], ["b0"], "image_percentile")
    assert whole == strips == batch
    assert whole[0][0] == pytest.approx(np.percentile(x, 2), abs=1.0)


def test_a_per_image_descriptor_refuses_to_normalise_before_it_is_fitted():
    x, valid = _brain()
    with pytest.raises(DescriptorError, match="per image"):
        _descriptor("image_zscore").normalise(x, valid)


def test_ct_clips_to_the_stores_percentiles_then_z_scores():
    rng = np.random.default_rng(1)
    hu = rng.normal(40, 300, 50_000).astype(np.float32)
    s = BandStats(exact=False)
    s.update(hu)
    stats = {"b0": s.summary()}
    ((lo, hi),) = clip_bounds(stats, ["b0"], "ct")
    assert lo == pytest.approx(np.percentile(hu, 0.5), rel=0.02)
    assert hi == pytest.approx(np.percentile(hu, 99.5), rel=0.02)
    x = np.array([[[-3000.0, 40.0, 3000.0]]], dtype=np.float32)
    out = apply(x, np.ones((1, 3), bool), np.float32([[[40.0]]]), np.float32([[[300.0]]]), "ct",
                np.float32([[lo, hi]]))  # fmt: skip
    assert out[0, 0, 0] == pytest.approx((lo - 40) / 300, rel=1e-5)
    assert out[0, 0, 1] == 0 and out[0, 0, 2] == pytest.approx((hi - 40) / 300, rel=1e-5)
    with pytest.raises(ValueError, match="predates"):
        clip_bounds({"b0": {"mean": 0, "std": 1}}, ["b0"], "ct")


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("how", ["zscore", "image_zscore"])
def test_apply_in_place_is_the_written_formula_bit_for_bit(wide, how):
    """``apply`` writes into float32 buffers step by step; its values are those of
    ``where(keep, (x - shift) / scale, 0)`` rounded once to float32, clipped or not, with
    float32 or float64 shift and scale."""
    from tessera.models.data.normalisation import mask_for

    rng = np.random.default_rng(4)
    values = rng.integers(0, 4000, (3, 2, 9, 9)).astype(np.uint16)
    valid = rng.random((3, 9, 9)) > 0.2
    dtype = np.float64 if wide else np.float32
    shift = rng.normal(900, 50, (2, 1, 1)).astype(dtype)
    scale = rng.uniform(100, 900, (2, 1, 1)).astype(dtype)
    clip = np.array([[10.0, 3000.0], [0.0, 3500.0]])
    for bounds in (None, clip):
        x = values.astype(np.float32)
        if bounds is not None:
            b = bounds.astype(np.float32)
            x = np.clip(x, b[:, 0, None, None], b[:, 1, None, None])
        keep = np.expand_dims(mask_for(values, valid, how), -3)
        want = np.where(keep, (x - shift) / scale, np.float32(0.0)).astype(np.float32)
        out = np.full(values.shape, np.nan, np.float32)
        got = apply(values, valid, shift, scale, how, bounds, out)
        assert got is out and got.dtype == np.float32
        assert np.array_equal(got, want) and np.array_equal(apply(values, valid, shift, scale,
                                                                  how, bounds), want)  # fmt: skip
