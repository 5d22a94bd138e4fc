"""A DICOM input's class map as a DICOM SEG: one segment per class, read back by highdicom onto
the source instances' own frames; a source without the tags a SEG needs is refused first."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from tessera.tasks.prediction.apply import plan_maps, predict_scene
from tessera.tasks.prediction.map_lineage import read_lineage
from tessera.tasks.sources.refusals import BadInputError
from tests.prediction.test_apply import OPTS, _model, _records
from tests.sources.test_labels_and_series import _write_series


def _series(folder: Path, z_offsets: list[float], drop: str | None = None) -> Path:
    """CT_small's slice at each z offset, each slice's values shifted so that the slices
    differ; the instance numbers run against the positions (the order is by position)."""

    def edit(ds: pydicom.Dataset, k: int) -> None:
        ds.PixelData = (ds.pixel_array.astype(np.int16) - 150 * k).tobytes()
        if drop is not None:
            delattr(ds, drop)

    numbers = list(range(len(z_offsets), 0, -1))
    return _write_series(folder, z_offsets, numbers, edit)


def _expected_labels(ds: pydicom.Dataset) -> np.ndarray:
    """The toy model's segment of each pixel: 2 (``high``) above 0 HU, else 1 (``low``)."""
    return np.where(apply_modality_lut(ds.pixel_array, ds) > 0, 2, 1)


def test_a_series_map_is_a_seg_that_highdicom_reads_back_onto_the_source_frames(tmp_path):
    series = _series(tmp_path / "series", [0.0, 2.5, 5.0])
    (rec,) = _records([series])
    model = _model("dicom", ["c0"], 0.0)
    kept, rejected = plan_maps([rec], model, OPTS, tmp_path / "o", tmp_path)
    assert kept == [rec] and not rejected
    res = predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")
    seg_file = next(Path(f) for f in res["files"] if f.endswith("_seg.dcm"))
    seg = hd.seg.segread(seg_file)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert [seg.get_segment_description(n).SegmentLabel for n in (1, 2)] == ["low", "high"]
    sources = [pydicom.dcmread(f) for f in sorted(series.iterdir())]
    assert {s.SeriesInstanceUID for s in sources} == {
        r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence
    }
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    for ds in sources:
        got = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[ds.SOPInstanceUID], combine_segments=True
        )
        assert got.shape == (1, ds.Rows, ds.Columns)
        np.testing.assert_array_equal(got[0], _expected_labels(ds))
    # the lineage makes a rerun skip the volume, the SEG included
    assert read_lineage(seg_file)["tessera_model"] == "tessera-toy"
    assert predict_scene(rec, tmp_path, model, OPTS, tmp_path / "o")["skipped"]


def test_a_single_dicom_file_gets_a_seg_of_its_one_frame(tmp_path):
    import shutil

    ct = Path(shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    (rec,) = _records([ct])
    res = predict_scene(rec, tmp_path, _model("dicom", ["c0"], 0.0), OPTS, tmp_path / "o")
    assert [Path(f).name for f in res["files"]] == ["ct_classes.nii.gz", "ct_seg.dcm"]
    seg = hd.seg.segread(tmp_path / "o" / "ct_seg.dcm")
    source = pydicom.dcmread(ct)
    got = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], combine_segments=True
    )
    np.testing.assert_array_equal(got[0], _expected_labels(source))


@pytest.mark.parametrize("tag", ["FrameOfReferenceUID", "StudyInstanceUID"])
def test_a_series_without_a_tag_the_seg_needs_is_refused_before_anything_is_written(tmp_path, tag):
    series = _series(tmp_path / "series", [0.0, 2.5], drop=tag)
    (rec,) = _records([series])
    with pytest.raises(BadInputError, match=f"slice0.dcm: no {tag}: a DICOM SEG cannot"):
        plan_maps([rec], _model("dicom", ["c0"], 0.0), OPTS, tmp_path / "o", tmp_path)
    assert not (tmp_path / "o").exists()


def test_a_file_in_the_seg_path_that_tessera_did_not_write_is_refused(tmp_path):
    from tessera.tasks.base.outputs import OutputRefusedError

    series = _series(tmp_path / "series", [0.0, 2.5])
    (rec,) = _records([series])
    (tmp_path / "o").mkdir()
    theirs = tmp_path / "o" / f"{rec.scene_id}_seg.dcm"
    theirs.write_bytes(b"the user's own SEG")
    with pytest.raises(OutputRefusedError):
        plan_maps([rec], _model("dicom", ["c0"], 0.0), OPTS, tmp_path / "o", tmp_path)
    assert theirs.read_bytes() == b"the user's own SEG"
