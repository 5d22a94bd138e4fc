"""A BIDS dataset as a source: its images (pybids) ingest as NIfTI volumes with their
participants, each participant's volumes land in one split, labels come from derivatives;
a folder that is not BIDS, or an unknown participant, is one line."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from tessera.tasks.sources.catalog import read_catalog
from tessera.tasks.sources.samples import sample_files
from tessera.tasks.store.reader import TileStore

CLASSES = ["background", "gm", "wm"]


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)


def _subsampled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A sample volume at every fourth voxel (the test's size), on its own affine."""
    img = nib.load(path)
    affine = img.affine.copy()
    affine[:3, :3] *= 4
    return np.asarray(img.dataobj)[::4, ::4, ::4], affine


def _bids_of_the_samples(root: Path) -> Path:
    """Three participants from the packaged sample brains: colin27 scanned in two sessions,
    the warped MNI152 brain and the MNI152 template (its dseg from its GM and WM maps); the
    images as float32, one dtype for the source."""
    files = sample_files()
    colin, colin_affine = _subsampled(files["colin27/ch2bet.nii.gz"])
    colin_seg, _ = _subsampled(files["colin27/ch2bet_tissue.nii.gz"])
    warped, warped_affine = _subsampled(files["mni152_warped/mni152_warped.nii.gz"])
    warped_seg, _ = _subsampled(files["mni152_warped/mni152_warped_tissue.nii.gz"])
    mni = "mni152/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    t1, mni_affine = _subsampled(files[mni.format("t1")])
    gm, wm = (_subsampled(files[mni.format(t)])[0] for t in ("gm", "wm"))
    mni_seg = np.where(wm > 0.5, 2, np.where(gm > 0.5, 1, 0)).astype(np.uint8)
    subjects = {
        ("colin27", "1"): (colin, colin_seg, colin_affine),
        ("colin27", "2"): (colin, colin_seg, colin_affine),
        ("warped", "1"): (warped, warped_seg, warped_affine),
        ("mni152", "1"): (t1, mni_seg, mni_affine),
    }
    bids = root / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "Tessera samples", "BIDSVersion": "1.9.0"})
    )
    (bids / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{s}\n" for s in ("colin27", "mni152", "warped"))
    )
    tissue = bids / "derivatives" / "tissue"
    tissue.mkdir(parents=True)
    (tissue / "dataset_description.json").write_text(json.dumps({
        "Name": "tissue", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "Tessera tests"}],
    }))  # fmt: skip
    for (sub, ses), (image, seg, affine) in subjects.items():
        stem = f"sub-{sub}_ses-{ses}"
        _save(
            image.astype(np.float32),
            affine,
            bids / f"sub-{sub}" / f"ses-{ses}" / "anat" / f"{stem}_T1w.nii.gz",
        )
        where = tissue / f"sub-{sub}" / f"ses-{ses}" / "anat" / f"{stem}_dseg.nii.gz"
        _save(seg.astype(np.uint8), affine, where)
    return bids


def _params(root: Path, **bids: object) -> None:
    source = {"name": "brains", "kind": "bids", "paths": ["bids"],
              "bids": {"label_suffix": "dseg", "classes": CLASSES, **bids}}  # fmt: skip
    params = {
        "ingest": {"sources": [source]},
        "tile": {"size": 16, "stride": 16, "min_valid_fraction": 0.0},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_a_bids_dataset_ingests_and_tiles_with_each_participant_in_one_split(tmp_path, cli):
    _bids_of_the_samples(tmp_path)
    _params(tmp_path)
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 0, err
    records = read_catalog(tmp_path / "outputs" / "catalog.parquet")
    assert {r.scene_id: r.subject for r in records} == {
        "brains/sub-colin27_ses-1_T1w": "sub-colin27",
        "brains/sub-colin27_ses-2_T1w": "sub-colin27",
        "brains/sub-mni152_ses-1_T1w": "sub-mni152",
        "brains/sub-warped_ses-1_T1w": "sub-warped",
    }
    for r in records:
        assert r.kind == "nifti" and r.class_names == CLASSES
        assert r.label_files == [
            f"bids/derivatives/tissue/{r.subject}/{r.scene_id.split('_')[1]}/anat/"
            f"{r.scene_id.removeprefix('brains/').removesuffix('_T1w')}_dseg.nii.gz"
        ]
    rc, _, err = cli("tile", cwd=tmp_path)
    assert rc == 0, err
    index = TileStore.open(tmp_path / "outputs" / "tiles").index
    splits = index.groupby("scene_id")["split"].unique().map(lambda s: sorted(set(s) - {None}))
    by_subject: dict[str, set[str]] = {}
    for scene, s in splits.items():
        assert len(s) == 1, (scene, s)  # a whole volume in one split
        by_subject.setdefault(str(scene).split("_")[0], set()).update(s)
    assert all(len(s) == 1 for s in by_subject.values()), by_subject  # both sessions together
    assert set().union(*by_subject.values()) == {"train", "val", "test"}


def test_participants_pick_the_subjects_and_an_unknown_one_is_one_line(tmp_path, cli):
    _bids_of_the_samples(tmp_path)
    _params(tmp_path, participants=["sub-warped", "mni152"])
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 0, err
    subjects = {r.subject for r in read_catalog(tmp_path / "outputs" / "catalog.parquet")}
    assert subjects == {"sub-warped", "sub-mni152"}
    _params(tmp_path, participants=["sub-nobody"])
    rc, _, err = cli("ingest", "--set", "ingest.catalog=outputs/other.parquet", cwd=tmp_path)
    assert rc == 1 and "bids: no participant sub-nobody in the dataset" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "outputs" / "other.parquet").exists()


def test_a_folder_that_is_not_bids_or_lacks_a_label_is_one_line_and_writes_nothing(tmp_path, cli):
    bids = _bids_of_the_samples(tmp_path)
    _params(tmp_path)
    (bids / "dataset_description.json").unlink()
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 1 and "bids: not a BIDS dataset: no dataset_description.json" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "outputs").exists()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.9.0"})
    )
    seg = "derivatives/tissue/sub-warped/ses-1/anat/sub-warped_ses-1_dseg.nii.gz"
    (bids / seg).unlink()
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 1 and "sub-warped_ses-1_T1w.nii.gz: no dseg label map" in err
    assert not (tmp_path / "outputs").exists()
