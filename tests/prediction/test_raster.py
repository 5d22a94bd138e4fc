"""A class map of a whole scene: a valid COG on the input's exact grid, nodata kept."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tessera.models.palette import CLASS_PALETTE
from tessera.tasks.prediction.cog import CLASS_NODATA
from tessera.tasks.prediction.raster_maps import (
    Cells,
    MapFiles,
    Scorer,
    predict_raster_pixels,
    predict_raster_windows,
)
from tessera.tasks.prediction.stitching import Stitching
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
    high = (x[:, 0] > 500).astype(np.float32)
    return np.stack([1 - high, high], axis=1)


def _raw(window: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return window.astype(np.float32)


def test_class_map_is_a_cog_on_the_input_grid_with_nodata_kept(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 1000, (3, 1100, 1030)).astype(np.uint16)
    data[:, :40, :70] = 0  # nodata corner
    data[1, 600:610, 900:] = 0  # one band nodata: the pixel has no answer
    src = write_geotiff(tmp_path / "scene.tif", data, nodata=0)
    scene = _scene(src)
    files = MapFiles(tmp_path / "out" / "scene_classes.tif", tmp_path / "out" / "scene_p.tif")
    scorer = Scorer(_threshold_model, _raw, ["low", "high"])
    predict_raster_pixels(scene, files, scorer, Stitching(64, 16), {"tessera_model": "threshold"})
    scene.close()
    out = files.classes
    nodata = (data == 0).any(axis=0)
    expected = np.where(nodata, CLASS_NODATA, (data[0] > 500).astype(np.uint8))
    with rasterio.open(out) as ds, rasterio.open(src) as inp:
        assert (ds.crs, ds.transform, ds.shape) == (inp.crs, inp.transform, inp.shape)
        assert ds.dtypes == ("uint8",) and ds.nodata == CLASS_NODATA
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"] and ds.overviews(1)  # internal overviews
        assert np.array_equal(ds.read(1), expected)
        assert ds.colormap(1)[1][:3] == CLASS_PALETTE[1]  # the plots' legend colour
        assert ds.tags()["class_1"] == "high" and ds.tags()["tessera_model"] == "threshold"
    with rasterio.open(files.probabilities) as ds:
        assert ds.count == 2 and ds.descriptions == ("low", "high") and ds.nodata is None
        high = np.where(nodata, 0, (data[0] > 500) * 255)
        assert np.array_equal(ds.read(2), high)  # p = 1 is 255: masked pixels say "no data"
        assert np.array_equal(ds.read_masks(1) == 0, nodata)
    assert sorted(p.name for p in out.parent.iterdir()) == ["scene_classes.tif", "scene_p.tif"]


def test_a_failed_prediction_leaves_no_file(tmp_path):
    src = write_geotiff(tmp_path / "s.tif", np.ones((1, 80, 80), np.uint16), nodata=0)
    scene = _scene(src)

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("model failed")

    out = tmp_path / "o" / "s_classes.tif"
    with pytest.raises(RuntimeError, match="model failed"):
        predict_raster_pixels(scene, MapFiles(out), Scorer(broken, _raw, ["a"]), Stitching(32, 8))
    scene.close()
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_two_attempts_at_one_map_at_once_each_write_their_own_files(tmp_path):
    """Dask runs a task again when it counts a worker as lost, possibly while the first
    attempt still writes: both attempts' maps are whole, and one of them is the map."""
    data = np.arange(96 * 96, dtype=np.uint16).reshape(1, 96, 96) % 1000
    src = write_geotiff(tmp_path / "s.tif", data)
    out = tmp_path / "o" / "s_classes.tif"
    both_writing = threading.Barrier(2, timeout=60)

    def attempt() -> None:
        scene = _scene(src)
        first = [True]

        def model(x: np.ndarray) -> np.ndarray:
            if first[0]:  # both attempts have opened their files before either writes
                first[0] = False
                both_writing.wait()
            return _threshold_model(x)

        try:
            scorer = Scorer(model, _raw, ["low", "high"])
            predict_raster_pixels(scene, MapFiles(out), scorer, Stitching(32, 8, batch_size=1))
        finally:
            scene.close()

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(attempt) for _ in range(2)]:
            f.result(timeout=120)
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(1), (data[0] > 500).astype(np.uint8))
    assert [p.name for p in out.parent.iterdir()] == ["s_classes.tif"]


def test_a_per_window_model_paints_one_cell_per_stride_on_the_cluster_map_grid(tmp_path):
    data = np.full((1, 50, 70), 100, np.uint16)
    data[:, :, 40:] = 900  # windows starting at column 40 or later see only high values
    data[:, 40:, :20] = 0  # nodata: the windows starting there have no valid pixel
    src = write_geotiff(tmp_path / "w.tif", data, nodata=0)
    scene = _scene(src)

    def mean_rule(x: np.ndarray) -> np.ndarray:  # (N, C, s, s) -> (N, K): high if mean > 500
        valid = x[:, 0] > 0
        mean = (x[:, 0] * valid).sum((1, 2)) / np.maximum(valid.sum((1, 2)), 1)
        high = (mean > 500).astype(np.float32)
        return np.stack([1 - high, high], axis=1)

    out = tmp_path / "w_classes.tif"
    scorer = Scorer(mean_rule, _raw, ["low", "high"])
    predict_raster_windows(scene, MapFiles(out), scorer, Cells(20, 10))
    scene.close()
    with rasterio.open(out) as ds, rasterio.open(src) as inp:
        assert ds.shape == (5, 7) and ds.crs == inp.crs
        assert ds.transform == inp.transform @ inp.transform.scale(10)
        got = ds.read(1)
    want = np.zeros((5, 7), np.uint8)
    want[:, 4:] = 1
    # the window at column 30 is half low, half high: mean 500, not above, so low
    want[4, 0] = CLASS_NODATA  # rows 40..50, columns 0..20: all nodata (at 10..30, half)
    assert np.array_equal(got, want)
