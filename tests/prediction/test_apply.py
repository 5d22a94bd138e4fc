"""One scene or volume through a model: descriptor checks, band order, own-grid NIfTI, reruns."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import rasterio
import torch

from tessera.models.descriptor import DescriptorError, ModelDescriptor
from tessera.tasks.base.outputs import OutputRefusedError
from tessera.tasks.prediction.apply import plan_maps, predict_scene
from tessera.tasks.prediction.model import AppliedModel
from tessera.tasks.prediction.predict_options import PredictOptions
from tessera.tasks.sources.adhoc import adhoc_sources
from tessera.tasks.sources.catalog import inspect_source
from tessera.tasks.sources.records import SceneRecord
from tests.helpers import write_geotiff, write_nifti


class FirstBandAbove(torch.nn.Module):
    """Logits of two classes: class 1 where the first input band is above 0 (normalised)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([-x[:, 0], x[:, 0]], dim=1) * 10


class Halved(torch.nn.Module):
    """A reconstruction of half the input: its error is half the input, known everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


def _model(kind: str, bands: list[str], shift: float, window: int = 16) -> AppliedModel:
    d = ModelDescriptor(
        experiment="toy", model_type="seg_ae", output="class_logits", source="s",
        source_kind=kind, bands=bands, normalisation="zscore", shift=[shift] * len(bands),
        scale=[1.0] * len(bands), window=window, stride=window, axis=2,
        class_names=["low", "high"], nodata=None, store_version=3,
    )  # fmt: skip
    return AppliedModel(
        FirstBandAbove().eval(), d, "tessera-toy", "7", "models:/tessera-toy/7", {}, Halved()
    )


def _records(paths: list[Path], stack: bool = False) -> list[SceneRecord]:
    report = inspect_source(adhoc_sources(paths, None, stack)[0], paths[0].parent)
    assert report.records, report.rejected
    return report.records


OPTS = PredictOptions(device="cpu", overlap=0.25)


def test_band_files_given_in_another_order_are_read_in_the_models(tmp_path):
    rng = np.random.default_rng(0)
    b1, b2 = rng.integers(1, 1000, (2, 40, 50)).astype(np.uint16)
    files = [write_geotiff(tmp_path / f"l8_{n}.tif", a) for n, a in (("B2", b2), ("B1", b1))]
    (rec,) = _records(files, stack=True)
    res = predict_scene(rec, tmp_path, _model("geotiff", ["B1", "B2"], 500.0), OPTS, tmp_path / "o")
    with rasterio.open(res["files"][0]) as ds:
        assert np.array_equal(ds.read(1), (b1 > 500).astype(np.uint8))  # B1 decides, not B2
        assert ds.tags()["tessera_model_version"] == "7"


def test_an_oblique_lps_nifti_gets_labels_on_the_same_world_voxels(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(20, 24, 9)).astype(np.float32)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array([[-c * 1.5, s, 0, 40], [-s * 1.5, -c, 0, 60], [0, 0, 2.5, -10], [0, 0, 0, 1]])
    src = write_nifti(tmp_path / "lps.nii.gz", data, affine)  # oblique, x and y flipped (LPS)
    (rec,) = _records([src])
    model = _model("nifti", ["c0"], 0.0)
    res = predict_scene(rec, tmp_path, model, OPTS.model_copy(update={"probabilities": True}),
                        tmp_path / "o")  # fmt: skip
    img = nib.load(res["files"][0])
    assert img.shape == data.shape and np.allclose(img.affine, affine)
    assert np.array_equal(np.asarray(img.dataobj), (data > 0).astype(np.uint8))
    probs = nib.load(res["files"][1])
    assert probs.shape == (*data.shape, 2)
    assert np.array_equal(np.asarray(probs.dataobj)[..., 1] > 127, data > 0)


def test_a_rerun_with_the_same_model_version_is_skipped_unless_forced(tmp_path):
    src = write_geotiff(tmp_path / "a.tif", np.full((1, 20, 20), 900, np.uint16))
    (rec,) = _records([src])
    model = _model("geotiff", ["b1"], 500.0)
    first = predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")
    out = Path(first["files"][0])
    stamp = out.stat().st_mtime_ns
    assert predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")["skipped"]
    assert out.stat().st_mtime_ns == stamp
    model.version = "8"  # a new version maps it again
    assert not predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")["skipped"]
    forced = OPTS.model_copy(update={"force": True})
    assert not predict_scene(rec, tmp_path, model, forced, tmp_path / "o")["skipped"]


def test_misfits_are_rejected_before_any_map_and_foreign_files_refused(tmp_path):
    three = write_geotiff(tmp_path / "three.tif", np.ones((3, 20, 20), np.uint16))
    vol = write_nifti(tmp_path / "v.nii.gz", np.ones((8, 8, 4), np.float32), np.eye(4))
    model = _model("geotiff", ["b1", "b2"], 0.0)
    recs = _records([three]) + _records([vol])
    kept, rejected = plan_maps(recs, model, OPTS, tmp_path / "o")
    assert kept == [] and [r["reason"] for r in rejected] == [
        "3 bands (b1, b2, b3), but toy reads 2 (b1, b2)",
        "a nifti input, but toy was trained on geotiff (s)",
    ]
    two = write_geotiff(tmp_path / "two.tif", np.ones((2, 20, 20), np.uint16))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "two_classes.tif").write_text("the user's own file")
    with pytest.raises(OutputRefusedError, match="exists and is not a Tessera prediction map"):
        plan_maps(_records([two]), model, OPTS, tmp_path / "o")
    assert (tmp_path / "o" / "two_classes.tif").read_text() == "the user's own file"
    latent = _model("geotiff", ["b1", "b2"], 0.0)  # a cvae: μ under each class hypothesis
    latent.descriptor = latent.descriptor.model_copy(update={"output": "latent_mean_per_class"})
    with pytest.raises(DescriptorError, match=r"maps classes \(seg_ae, ssvae\) and a vae's"):
        plan_maps(_records([two]), latent, OPTS, tmp_path / "p")


def test_reconstruction_in_source_units_and_the_anomaly_map_equal_their_analytic_values(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(1, 1000, (2, 45, 38)).astype(np.uint16)
    data[:, :5, :7] = 0  # nodata: no value in either map
    src = write_geotiff(tmp_path / "r.tif", data, nodata=0)
    (rec,) = _records([src])
    opts = OPTS.model_copy(update={"reconstruction": True, "blend": "gaussian"})
    res = predict_scene(rec, tmp_path, _model("geotiff", ["b1", "b2"], 500.0), opts, tmp_path / "o")
    names = [Path(f).name for f in res["files"]]
    assert names == ["r_classes.tif", "r_reconstruction.tif", "r_anomaly.tif"]
    x = data.astype(np.float64)
    nodata = (data == 0).any(axis=0)
    with rasterio.open(tmp_path / "o" / "r_reconstruction.tif") as ds:
        got = ds.read()
        assert ds.dtypes == ("float32", "float32") and ds.descriptions == ("b1", "b2")
    want = 0.5 * (x - 500.0) + 500.0  # half the normalised input, back in source units
    assert np.isnan(got[:, nodata]).all()
    assert np.allclose(got[:, ~nodata], want[:, ~nodata], atol=1e-3)
    with rasterio.open(tmp_path / "o" / "r_anomaly.tif") as ds:
        err = ds.read(1)
    assert np.allclose(err[~nodata], (0.5 * np.abs(x - 500.0)).mean(axis=0)[~nodata], atol=1e-3)
    assert np.isnan(err[nodata]).all()
    no_rec = _model("geotiff", ["b1", "b2"], 500.0)
    no_rec.reconstruction = None
    with pytest.raises(DescriptorError, match="--reconstruction: no reconstruction"):
        plan_maps([rec], no_rec, opts, tmp_path / "p")


def test_a_dicom_gets_a_nifti_on_the_series_affine_in_ras_order(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    from tessera.tasks.sources.volume import load_volume

    ct = Path(shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    (rec,) = _records([ct])
    vol = load_volume(ct, "dicom")
    model = _model("dicom", ["c0"], 0.0)
    res = predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")
    img = nib.load(res["files"][0])
    assert res["files"][0].endswith("ct_classes.nii.gz")
    assert img.shape == vol.array.shape[1:] and np.allclose(img.affine, vol.affine)
    assert np.array_equal(np.asarray(img.dataobj), (vol.array[0] > 0).astype(np.uint8))


class WindowMean(torch.nn.Module):
    """A latent-only model: μ is the window's mean of the first band (N, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].mean(dim=(2, 3))


def test_a_vae_paints_each_window_with_its_nearest_evaluation_cluster(tmp_path):
    data = np.full((1, 32, 48), 100, np.uint16)
    data[:, :, 24:] = 900
    src = write_geotiff(tmp_path / "v.tif", data)
    (rec,) = _records([src])
    model = _model("geotiff", ["b1"], 500.0, window=8)
    model.module = WindowMean()
    model.descriptor = model.descriptor.model_copy(update={"output": "latent_mean"})
    model.centroids = None
    with pytest.raises(DescriptorError, match=r"no clusters\.json"):
        plan_maps([rec], model, OPTS, tmp_path / "o")
    model.centroids = np.array([[300.0], [-300.0]], np.float32)  # cluster 1: low values
    res = predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")
    with rasterio.open(res["files"][0]) as ds:
        got, tags = ds.read(1), ds.tags()
    assert got.shape == (4, 6) and tags["classes"] == "cluster_0,cluster_1"
    assert np.array_equal(got, np.where(np.arange(6) < 3, 1, 0)[None].repeat(4, 0))


class NearTie(torch.nn.Module):
    """Three classes everywhere at p = 0.2, 0.3999 and 0.4001: 1 and 2 both round to 102/255."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.log(torch.tensor([0.2, 0.3999, 0.4001]))[None, :, None, None]
        return logits.expand(x.shape[0], 3, *x.shape[2:])


def test_a_volumes_class_map_is_the_argmax_of_its_scores_not_of_the_rounded_ones(tmp_path):
    data = np.ones((12, 10, 3), np.float32)
    (rec,) = _records([write_nifti(tmp_path / "v.nii.gz", data, np.eye(4))])
    model = _model("nifti", ["c0"], 0.0, window=8)
    model.module = NearTie().eval()
    model.descriptor = model.descriptor.model_copy(update={"class_names": ["a", "b", "c"]})
    opts = OPTS.model_copy(update={"probabilities": True})
    res = predict_scene(rec, tmp_path, model, opts, tmp_path / "o")
    probs = np.asarray(nib.load(res["files"][1]).dataobj)
    assert (probs[..., 1] == probs[..., 2]).all() and (probs[..., 1] == 102).all()  # tied
    # class 2, as evaluation scores it; the rounded probabilities would have given class 1
    assert (np.asarray(nib.load(res["files"][0]).dataobj) == 2).all()


def test_scenes_mapped_in_threads_never_change_gdals_cache_and_lose_no_rows(tmp_path):
    """GDAL applies a new cache maximum by flushing blocks at once, whoever's they are: set
    per task (as it was), it made a map another thread was writing lose rows (nodata). The
    bound is set once per process (tessera.tasks.sources.raster) and no task changes it."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Event, Thread

    from rasterio.env import get_gdal_config

    from tessera.tasks.sources.raster import GDAL_CACHE_MB

    bound = get_gdal_config("GDAL_CACHEMAX")
    assert bound == GDAL_CACHE_MB << 20  # bytes, as GDAL counts them
    seen, done = set(), Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(get_gdal_config("GDAL_CACHEMAX"))

    rng = np.random.default_rng(1)
    images = [rng.integers(1, 1000, (1, 96, 80)).astype(np.uint16) for _ in range(4)]
    paths = [write_geotiff(tmp_path / f"s{k}.tif", a) for k, a in enumerate(images)]
    model = _model("geotiff", ["b1"], 500.0)
    watcher = Thread(target=watch)
    watcher.start()
    try:
        records = [_records([p])[0] for p in paths]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(
                lambda r: predict_scene(r, tmp_path, model, OPTS, tmp_path / "o"), records
            ))  # fmt: skip
    finally:
        done.set()
        watcher.join()
    assert seen == {bound}
    for image, res in zip(images, results, strict=True):
        with rasterio.open(res["files"][0]) as ds:
            assert np.array_equal(ds.read(1), (image[0] > 500).astype(np.uint8))
