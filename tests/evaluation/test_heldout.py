"""Held-out subjects: evaluate maps a brain the model never saw (a BIDS participant held out)
and scores it, beside the split score; per-image normalisation is what lets a model read
another scanner's intensities."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.helpers import write_nifti

TISSUE = {"sources": ["brain_a"], "heldout": ["brain_b"]}
MODEL = {"type": "seg_ae", "widths": [8, 16], "latent_channels": 8, "dilations": [1, 2],
         "lr": 0.01}  # fmt: skip


def _brain(shape: tuple[int, int, int], radii: tuple[float, float, float], scale: float,
           seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A skull-stripped 'T1': an ellipsoid of grey matter (1) around a white-matter core (2),
    GM darker than WM as in a T1, exactly 0 outside; intensities times ``scale``."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    r = np.sqrt(sum((g / rad) ** 2 for g, rad in zip(grid, radii, strict=True)))
    label = np.where(r < 1, 1, 0) + np.where(r < 0.6, 1, 0)
    means = np.array([0.0, 100.0, 150.0])
    t1 = np.where(label > 0, means[label] + rng.normal(0, 6, shape), 0.0) * scale
    return t1.astype(np.float32), label.astype(np.uint8)


@pytest.fixture(scope="module")
def project(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Brain A (trained on) and brain B (held out: another shape, grid and intensity scale),
    catalogued and tiled; two experiments that differ in normalisation only, trained."""
    from contextlib import chdir

    from tessera.flows.cli import run

    root = tmp_path_factory.mktemp("heldout")
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    a_t1, a_lab = _brain((48, 48, 40), (20, 18, 17), 1.0, seed=0)
    b_t1, b_lab = _brain((44, 52, 36), (17, 22, 15), 0.45, seed=1)  # another scanner's scale
    # the two brains as participants a and b of one BIDS dataset, each a source of its own
    # (docs/formats/bids.md): b is held out; also as plain files, for predict
    bids = root / "data" / "bids"
    for desc in (bids, bids / "derivatives" / "tissue"):
        desc.mkdir(parents=True, exist_ok=True)
        (desc / "dataset_description.json").write_text(json.dumps({
            "Name": desc.name, "BIDSVersion": "1.9.0", "DatasetType":
            "derivative" if desc != bids else "raw", "GeneratedBy": [{"Name": "tests"}],
        }))  # fmt: skip
    sources = []
    for name, t1, lab in (("brain_a", a_t1, a_lab), ("brain_b", b_t1, b_lab)):
        write_nifti(root / "data" / f"{name}.nii.gz", t1, affine)
        write_nifti(root / "data" / f"{name}_tissue.nii.gz", lab, affine)
        sub = f"sub-{name[-1]}"
        write_nifti(bids / sub / "anat" / f"{sub}_T1w.nii.gz", t1, affine)
        seg = bids / "derivatives" / "tissue" / sub / "anat" / f"{sub}_dseg.nii.gz"
        write_nifti(seg, lab, affine)
        sources.append({
            "name": name, "kind": "bids", "paths": ["data/bids"],
            "bids": {"participants": [sub], "label_suffix": "dseg",
                     "classes": ["background", "gm", "wm"]},
        })  # fmt: skip
    experiments = {
        f"brain-{how}": {
            "dataset": {"sources": TISSUE["sources"], "normalisation": how},
            "heldout": TISSUE["heldout"],
            "model": MODEL,
            "trainer": {"max_epochs": 6},
        }
        for how in ("image_zscore", "zscore")
    }
    params = {
        "ingest": {"sources": sources},
        "tile": {"size": 16, "stride": 16, "split": {"slab_thickness": 4, "slab_buffer": 0}},
        "train": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "loader": {"batch_size": 8},
                  "trainer": {"log_every_n_steps": 1}},
        "evaluate": {"tsne": False, "map_splits": ["test"]},
        "experiments": experiments,
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with chdir(root):
        for stage in ("ingest", "tile"):
            assert run([stage]) == 0
        for name in experiments:
            assert run(["train", "--experiment", name]) == 0
            assert run(["evaluate", "--experiment", name]) == 0
    return root


def _metrics(root: Path, name: str) -> dict:
    return json.loads((root / "outputs" / "eval" / name / "metrics.json").read_text())


@pytest.mark.long("its setup trains two brain experiments and ingests three subjects")
def test_evaluate_scores_the_held_out_brain_beside_the_split(project):
    m = _metrics(project, "brain-image_zscore")
    assert m["dice_mean"] is not None  # the split score stays
    for key in ("dice_mean", "dice_gm", "dice_wm", "recall_gm", "recall_wm", "iou_mean"):
        assert 0 <= m[f"heldout_{key}"] <= 1
    # one held-out source: its own figures are the pooled ones
    assert m["heldout_brain_b_dice_gm"] == m["heldout_dice_gm"]
    # per-image normalisation reads the other scanner's brain: most GM and WM found
    assert m["heldout_recall_gm"] > 0.6 and m["heldout_recall_wm"] > 0.6
    report = (project / "outputs" / "eval" / "brain-image_zscore" / "report.md").read_text()
    assert "held-out scores (heldout_*)" in report and "brain_b" in report
    assert "data/bids/derivatives/tissue/sub-b/anat/sub-b_dseg.nii.gz" in report
    plot = "heldout_brain_b_sub-b_T1w.png"  # the scene brain_b/sub-b_T1w, BIDS's file name
    png = project / "outputs" / "eval" / "brain-image_zscore" / "plots" / plot
    assert png.stat().st_size > 10_000 and f"(plots/{plot})" in report


def test_the_stores_statistics_cannot_read_another_scanners_intensities(project):
    image, store = _metrics(project, "brain-image_zscore"), _metrics(project, "brain-zscore")
    assert image["heldout_dice_wm"] > store["heldout_dice_wm"] + 0.3
    assert image["heldout_dice_mean"] > store["heldout_dice_mean"]


def test_the_forest_is_scored_on_the_held_out_brain_in_the_models_units(project):
    image, store = _metrics(project, "brain-image_zscore"), _metrics(project, "brain-zscore")
    for m in (image, store):
        assert 0 <= m["baseline_rf_heldout_dice_mean"] <= 1
        assert m["baseline_heldout_dice_mean"] == m["baseline_rf_heldout_dice_mean"]
    # the forest reads the bands the model reads: the store's statistics fail it the same way
    assert image["baseline_rf_heldout_dice_wm"] > store["baseline_rf_heldout_dice_wm"] + 0.3
    report = (project / "outputs" / "eval" / "brain-image_zscore" / "report.md").read_text()
    assert "| heldout_dice_mean |" in report  # the model-versus-baseline table has the row


def test_pixel_classes_predicts_valid_pixels_in_chunks():
    from tessera.tasks.prediction import scoring

    class Brightest:  # a per-pixel classifier: the index of the largest band
        calls = 0

        def predict(self, rows: np.ndarray) -> np.ndarray:
            Brightest.calls += 1
            return rows.argmax(axis=1)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 6)).astype(np.float32)
    valid = rng.random((5, 6)) > 0.3
    out = scoring.pixel_classes(Brightest(), x, valid, chunk=7)
    assert (out[~valid] == scoring.IGNORE).all()
    assert np.array_equal(out[valid], x.argmax(axis=0)[valid])
    assert Brightest.calls == -(-int(valid.sum()) // 7)


def test_predict_maps_the_held_out_brain_as_evaluate_scored_it(project, cli):
    rc, _, err = cli(
        "predict", "--model", "brain-image_zscore", "--input", "data/brain_b.nii.gz",
        "--out", "maps", cwd=project,
    )  # fmt: skip
    assert rc == 0, err
    pred = np.asarray(nib.load(project / "maps" / "brain_b_classes.nii.gz").dataobj)
    truth = np.asarray(nib.load(project / "data" / "brain_b_tissue.nii.gz").dataobj)
    m = _metrics(project, "brain-image_zscore")
    for c, name in ((1, "gm"), (2, "wm")):
        recall = ((pred == c) & (truth == c)).sum() / (truth == c).sum()
        assert recall == pytest.approx(m[f"heldout_recall_{name}"], abs=1e-9)


def _as_dicom_series(t1: np.ndarray, folder: Path) -> Path:
    """A (X, Y, Z) volume on the identity RAS affine as a CT series of int16 slices (values
    to 0.01 through the rescale slope): slice k's pixel (row r, column c) is voxel (c, r, k)."""
    import copy

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series, frame_of_reference = generate_uid(), generate_uid()
    for k in range(t1.shape[2]):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.FrameOfReferenceUID, ds.InstanceNumber = frame_of_reference, k + 1
        ds.Rows, ds.Columns = t1.shape[1], t1.shape[0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 1.0
        ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]  # LPS: RAS +x, +y
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.RescaleSlope, ds.RescaleIntercept = 0.01, 0.0
        ds.PixelData = np.round(t1[:, :, k].T * 100).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{k:04d}")
    return folder


def test_a_dicom_series_gets_a_seg_on_its_frames_with_the_maps_of_its_nifti(project, cli):
    import highdicom as hd
    import pydicom

    volume = nib.load(project / "data" / "brain_b.nii.gz")
    series = _as_dicom_series(np.asarray(volume.dataobj), project / "dicom" / "brain_b")
    rc, _, err = cli(
        "predict", "--model", "brain-image_zscore", "--input", "dicom/brain_b",
        "--out", "dicom-maps", cwd=project,
    )  # fmt: skip
    assert rc == 0, err
    seg = hd.seg.segread(project / "dicom-maps" / "brain_b_seg.dcm")
    labels = [seg.get_segment_description(n).SegmentLabel for n in seg.segment_numbers]
    assert labels == ["background", "gm", "wm"]
    # the NIfTI input's own map (the test above), in the series' frames: the same classes
    nifti_map = np.asarray(nib.load(project / "maps" / "brain_b_classes.nii.gz").dataobj)
    agree = []
    for f in sorted(series.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        got = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID], combine_segments=True
        )[0]
        agree.append(np.mean(got == nifti_map[:, :, ds.InstanceNumber - 1].T + 1))
    assert min(agree) > 0.99, agree  # the values differ by the slope's rounding only


def test_summary_shows_the_held_out_score_beside_the_split_score(project, cli):
    rc, out, err = cli("summary", cwd=project)
    assert rc == 0, err
    assert "held-out" in out


def test_a_source_both_trained_on_and_held_out_is_refused(project, cli):
    rc, _, err = cli(
        "evaluate", "--experiment", "brain-image_zscore", "--set",
        "experiments.brain-image_zscore.heldout=[brain_a]", cwd=project,
    )  # fmt: skip
    assert rc != 0 and "both trained on and held out" in err
    assert len(err.strip().splitlines()) == 1


def test_the_gate_decides_on_the_held_out_score_where_there_is_one():
    from tessera.tasks.registry.gate import gate_metric

    assert gate_metric({"dice_mean": 0.95, "heldout_dice_mean": 0.6}, "dice_mean") == (
        "heldout_dice_mean"
    )
    assert gate_metric({"dice_mean": 0.95, "heldout_dice_mean": None}, "dice_mean") == "dice_mean"
    assert gate_metric({"silhouette": 0.3}, "silhouette") == "silhouette"


def test_the_headline_puts_the_held_out_score_beside_the_split_score():
    from tessera.tasks.pipeline.run_report import headline

    line = headline({"dice_mean": 0.949, "heldout_dice_mean": 0.8712, "silhouette": 0.5})
    assert line == "dice_mean 0.949 split, 0.8712 held-out, silhouette 0.5"


def test_the_shipped_colin27_labels_are_what_the_derivation_gives():
    from tessera.tasks.sources.tissue_labels import intensity_tissue_classes

    folder = Path(__file__).parents[2] / "tasks" / "sources" / "sample_volumes" / "colin27"
    t1 = np.asarray(nib.load(folder / "ch2bet.nii.gz").dataobj)
    shipped = np.asarray(nib.load(folder / "ch2bet_tissue.nii.gz").dataobj)
    assert np.array_equal(intensity_tissue_classes(t1), shipped)
    # a T1: CSF darkest, then GM, then WM; outside the brain nothing but background
    means = [t1[(shipped == c) & (t1 > 0)].mean() for c in (0, 1, 2)]
    assert means[0] < means[1] < means[2] and (shipped[t1 == 0] == 0).all()


def test_the_shipped_synthetic_subject_is_what_its_generator_writes(tmp_path):
    from tessera.tasks.sources.samples import sample_files
    from tessera.tasks.sources.synthetic_subject import write_synthetic_subject

    files = sample_files()
    mni = files["mni152/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"].parent
    t1, tissue = write_synthetic_subject(mni, tmp_path)
    for made, rel in ((t1, "mni152_warped.nii.gz"), (tissue, "mni152_warped_tissue.nii.gz")):
        shipped = nib.load(files[f"mni152_warped/{rel}"])
        a = np.asarray(nib.load(made).dataobj).astype(np.int64)
        b = np.asarray(shipped.dataobj).astype(np.int64)
        # the same volume up to float32 rounding, which numpy's SIMD paths (pow, exp) make
        # differ between CPUs: on one here 9 of 7.2 M voxels came out 1 apart (x.5 rounded)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, rel
        assert (a != b).mean() < 1e-5, (rel, int((a != b).sum()))
        np.testing.assert_array_equal(nib.load(made).affine, shipped.affine)
    labels = np.asarray(nib.load(tissue).dataobj)
    image = np.asarray(nib.load(t1).dataobj).astype(float)
    means = [image[labels == c].mean() for c in (1, 2)]
    assert image.max() > 600 and means[0] < means[1]  # another unit; a T1's contrast


def test_the_shipped_synthetic_scene_is_what_its_generator_writes(tmp_path):
    import rasterio

    from tessera.tasks.sources.samples import sample_files
    from tessera.tasks.sources.synthetic_scene import write_synthetic_scene

    files = sample_files()
    src = files["landsat8/l8_B2.tif"].parent
    made = write_synthetic_scene(src, tmp_path)
    assert [p.name for p in made] == sorted(p.name for p in src.glob("l8_*.tif"))
    for path in made:
        with rasterio.open(path) as a, rasterio.open(files[f"landsat8_resensed/{path.name}"]) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.transform == b.transform and a.crs == b.crs == "EPSG:32615"
    # the labels follow the ground: each BQA value keeps its share of the footprint
    with rasterio.open(src / "l8_BQA.tif") as a, rasterio.open(tmp_path / "l8_BQA.tif") as b:
        old, new = a.read(1), b.read(1)
        blue_old, blue_new = (rasterio.open(p / "l8_B2.tif").read(1) for p in (src, tmp_path))
    new_in = new[blue_new > 0]
    for value in np.unique(old)[:6]:
        assert abs((old == value).mean() - (new_in == value).mean()) < 0.01
    assert (new[blue_new == 0] == 1).all()  # outside the footprint: designated fill
    # another sun and haze: the blue band is darker than 0.85 x and brighter than the haze alone
    assert 0.8 < blue_new[blue_new > 0].mean() / blue_old.mean() < 0.95


def test_a_raster_view_keeps_north_up_and_thins_a_large_scene():
    from tessera.tasks.evaluation.heldout import VIEW_PIXELS, raster_view

    h, w = 3000, 1500
    label = np.zeros((h, w), np.uint8)
    label[:30] = 2  # the northern rows
    values = np.stack([np.arange(h * w, dtype=np.float32).reshape(h, w)] * 2)
    valid = np.ones((h, w), bool)
    valid[:, -30:] = False
    view = raster_view("scene", values, valid, label, label)
    (image,), (lab,), (pred,) = view.image, view.label, view.predicted
    assert view.panels == ("map",) and max(image.shape) <= VIEW_PIXELS
    assert image.shape == lab.shape == pred.shape == (w // 3, h // 3)  # (east, north)
    assert (lab[:, -1] == 2).all() and (lab[:, 0] == 0).all()  # j runs north
    assert (image[-5:, :] == 0).all() and image[: w // 3 - 10].max() > 0.9  # invalid: black


def test_the_summary_compares_the_held_out_score_with_the_forests():
    from tessera.tasks.evaluation.comparison import versus_line
    from tessera.tasks.pipeline.run_report import VERSUS

    metrics = {"dice_mean": 0.917, "heldout_dice_mean": 0.881, "baseline_rf_dice_mean": 0.982,
               "baseline_rf_heldout_dice_mean": 0.885}  # fmt: skip
    line = versus_line(metrics, VERSUS)
    assert line == "dice_mean 0.917 < rf 0.982; heldout_dice_mean 0.881 < rf 0.885"
