"""A class map of a whole scene: a valid COG on the input's exact grid, nodata kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from tessera.tasks.prediction.cog import CLASS_NODATA, PALETTE
from tessera.tasks.prediction.raster import predict_raster_classes
from tessera.tasks.sources.adhoc import adhoc_sources
from tessera.tasks.sources.catalog import inspect_source
from tessera.tasks.tiling.scene import RasterScene
from tests.helpers import write_geotiff


def _scene(path: Path) -> RasterScene:
    report = inspect_source(adhoc_sources([path], None, False)[0], path.parent)
    assert report.records, report.rejected
    return RasterScene(report.records[0], path.parent)


def _threshold_model(x: np.ndarray) -> np.ndarray:
    """Class 1 where band 0 exceeds 500, else class 0: a pointwise rule, known everywhere."""
    return np.stack([np.full_like(x[:, 0], 500.0), x[:, 0]], axis=1)


def test_class_map_is_a_cog_on_the_input_grid_with_nodata_kept(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 1000, (3, 1100, 1030)).astype(np.uint16)
    data[:, :40, :70] = 0  # nodata corner
    data[1, 600:610, 900:] = 0  # one band nodata: the pixel has no answer
    src = write_geotiff(tmp_path / "scene.tif", data, nodata=0)
    scene = _scene(src)
    out = predict_raster_classes(
        scene, tmp_path / "out" / "scene_classes.tif", _threshold_model,
        lambda w: w.astype(np.float32), ["low", "high"], 64, 16,
        tags={"tessera_model": "threshold"},
    )  # fmt: skip
    scene.close()
    nodata = (data == 0).any(axis=0)
    expected = np.where(nodata, CLASS_NODATA, (data[0] > 500).astype(np.uint8))
    with rasterio.open(out) as ds, rasterio.open(src) as inp:
        assert (ds.crs, ds.transform, ds.shape) == (inp.crs, inp.transform, inp.shape)
        assert ds.dtypes == ("uint8",) and ds.nodata == CLASS_NODATA
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"] and ds.overviews(1)  # internal overviews
        assert np.array_equal(ds.read(1), expected)
        assert ds.colormap(1)[1][:3] == PALETTE[1]
        assert ds.tags()["class_1"] == "high" and ds.tags()["tessera_model"] == "threshold"
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene_classes.tif"]  # no staging


def test_a_failed_prediction_leaves_no_file(tmp_path):
    src = write_geotiff(tmp_path / "s.tif", np.ones((1, 80, 80), np.uint16), nodata=0)
    scene = _scene(src)

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("model failed")

    out = tmp_path / "o" / "s_classes.tif"
    with pytest.raises(RuntimeError, match="model failed"):
        predict_raster_classes(scene, out, broken, lambda w: w.astype(np.float32), ["a"], 32, 8)
    scene.close()
    assert not out.exists() and list(out.parent.iterdir()) == []
