import numpy as np
import pytest

from tessera.tasks.store.stats import BandStats, merge_states


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_integer_stats_are_exact(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -3000), min(info.max, 3000), size=50_000).astype(dtype)
    s = BandStats.for_dtype(np.dtype(dtype))
    s.update(x)
    out = s.summary()
    assert out["count"] == x.size
    assert out["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert out["std"] == pytest.approx(x.std(), rel=1e-9)
    assert (out["min"], out["max"]) == (x.min(), x.max())
    for q, key in ((2, "p2"), (98, "p98")):
        assert out[key] == np.percentile(x, q, method="lower")


def test_nodata_and_nan_are_excluded():
    s = BandStats.for_dtype(np.dtype("uint16"))
    s.update(np.array([0, 0, 0, 10, 20], dtype=np.uint16), nodata=0)
    assert s.summary()["count"] == 2 and s.summary()["mean"] == 15
    f = BandStats.for_dtype(np.dtype("float32"))
    f.update(np.array([np.nan, 1.0, 3.0, -9999.0], dtype=np.float32), nodata=-9999.0)
    assert f.summary()["count"] == 2 and f.summary()["mean"] == 2.0


def test_float_percentiles_within_bucket_error():
    rng = np.random.default_rng(2)
    x = rng.normal(100.0, 15.0, size=200_000).astype(np.float32)
    s = BandStats.for_dtype(x.dtype)
    s.update(x)
    out = s.summary()
    assert out["mean"] == pytest.approx(float(x.astype(np.float64).mean()), rel=1e-9)
    assert out["p2"] == pytest.approx(np.percentile(x, 2), rel=0.005)
    assert out["p98"] == pytest.approx(np.percentile(x, 98), rel=0.005)


def test_merge_in_any_order_equals_one_pass():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4000, size=30_000).astype(np.uint16)
    whole = BandStats.for_dtype(x.dtype)
    whole.update(x)
    parts = []
    for chunk in np.array_split(x, 7):
        s = BandStats.for_dtype(x.dtype)
        s.update(chunk)
        parts.append(s.to_state())
    merged = BandStats.from_state(merge_states(parts[::-1])).summary()
    ref = whole.summary()
    for k in ref:
        assert merged[k] == pytest.approx(ref[k], rel=1e-12), k
