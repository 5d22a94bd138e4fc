"""Every bad input gets one line naming the file and the problem, and nothing is written."""

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
from affine import Affine
from pydicom.data import get_testdata_file

from tests.helpers import write_geotiff, write_nifti


def _truncated_tif(d):
    p = write_geotiff(d / "truncated.tif", np.arange(200 * 200, dtype=np.uint16).reshape(200, 200))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p, None


def _zero_byte(d):
    p = d / "empty.tif"
    p.write_bytes(b"")
    return p, None


def _not_an_image(d):
    p = d / "notes.tif"
    p.write_text("these are my field notes, not a raster\n" * 20)
    return p, None


def _no_crs(d):
    return write_geotiff(d / "nocrs.tif", np.ones((8, 8), np.uint8), crs=None), None


def _all_nodata(d):
    return write_geotiff(d / "allnodata.tif", np.zeros((8, 8), np.uint16), nodata=0), None


def _all_nan(d):
    return write_geotiff(d / "allnan.tif", np.full((8, 8), np.nan, np.float32)), None


def _label_mismatch(d):
    img = write_geotiff(d / "image.tif", np.ones((16, 16), np.uint8))
    lab = write_geotiff(
        d / "shifted_label.tif",
        np.ones((16, 16), np.uint8),
        transform=Affine(30.0, 0.0, 452535.0, 0.0, -30.0, 3408645.0),
    )
    return img, lab


def _absurd_header(d):
    p = d / "absurd.nii"
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.float32)
    hdr.set_data_shape((30000, 30000, 30000))
    with open(p, "wb") as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 1024)
    return p, None


def _truncated_nifti(d):
    p = write_nifti(d / "cut.nii", np.ones((20, 20, 20), np.float32), np.eye(4))
    p.write_bytes(p.read_bytes()[:2000])
    return p, None


def _dicom_without_pixels(d):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    p = d / "nopixels.dcm"
    ds.save_as(p)
    return p, None


CASES = {
    "truncated": (_truncated_tif, "truncated"),
    "zero-byte": (_zero_byte, "empty file"),
    "not-an-image": (_not_an_image, "not a readable raster"),
    "no-crs": (_no_crs, "no CRS"),
    "all-nodata": (_all_nodata, "all nodata"),
    "all-nan": (_all_nan, "all NaN"),
    "label-mismatch": (_label_mismatch, "label extent mismatch"),
    "absurd-header": (_absurd_header, "absurd dimensions"),
    "truncated-nifti": (_truncated_nifti, "truncated"),
    "dicom-no-pixels": (_dicom_without_pixels, "no pixel data"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_in_one_line_and_writes_nothing(tmp_path, cli, case):
    make, reason = CASES[case]
    bad, label = make(tmp_path)
    out = tmp_path / "store"
    args = ["tile", "--input", bad, "--out", out, "--size", 8]
    if label:
        args += ["--label", label]
    rc, _stdout, err = cli(*args, cwd=tmp_path)
    lines = [ln for ln in err.splitlines() if ln.startswith("tessera:")]
    assert rc == 1
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert (label or bad).name in lines[0] and reason in lines[0], lines[0]
    assert not out.exists() and not (tmp_path / "store.tmp").exists()


def test_skip_keeps_good_inputs_and_lists_rejects(tmp_path, cli):
    good = write_geotiff(tmp_path / "good.tif", np.ones((16, 16), np.uint8))
    bad1, _ = _no_crs(tmp_path)
    bad2, _ = _zero_byte(tmp_path)
    out = tmp_path / "store"
    rc, stdout, err = cli(
        "tile",
        "--input",
        good,
        "--input",
        bad1,
        "--input",
        bad2,
        "--out",
        out,
        "--size",
        8,
        "--on-bad-input",
        "skip",
        cwd=tmp_path,
    )
    assert rc == 0, err
    rejected = json.loads((out / "rejected.json").read_text())
    assert sorted(r["path"].split("/")[-1] for r in rejected) == ["empty.tif", "nocrs.tif"]
    assert "2 rejected" in stdout
    assert set(json.loads((out / "store.json").read_text())["sources"]) == {"good"}


def test_invalid_config_is_one_line(tmp_path, cli):
    p = tmp_path / "params.yaml"
    p.write_text("tile:\n  size: -3\n")
    rc, _, err = cli("tile", "--params", p, cwd=tmp_path)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "tile.size" in err


def test_file_broken_after_ingest_is_one_line_at_tile_time(tmp_path, cli):
    import yaml

    src = write_geotiff(
        tmp_path / "later.tif", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 1
    )
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "ingest": {"sources": [{"name": "s", "kind": "geotiff", "paths": ["later.tif"]}]},
                "tile": {"size": 16, "split": {"block_size": 16}},
            }
        )
    )
    assert cli("ingest", cwd=tmp_path)[0] == 0
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    rc, _, err = cli("tile", cwd=tmp_path)
    lines = [ln for ln in err.splitlines() if ln.startswith("tessera:")]
    assert rc == 1 and len(lines) == 1 and "later.tif" in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "outputs" / "tiles").exists()


@pytest.mark.parametrize(("value", "cache"), [("48", 48 << 20), ("lots", None), ("0", None)])
def test_the_gdal_cache_variable_sets_the_bound_or_is_refused_naming_itself(value, cache):
    """``TESSERA_GDAL_CACHEMAX`` (MB) is GDAL's cache for the process; a value that is not a
    positive whole number is one line naming the variable."""
    import os
    import subprocess
    import sys

    code = (
        "from rasterio.env import get_gdal_config\n"
        "import tessera.tasks.sources.raster\n"
        "print(get_gdal_config('GDAL_CACHEMAX'))\n"
    )
    env = {**os.environ, "TESSERA_GDAL_CACHEMAX": value}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    if cache is not None:
        assert res.returncode == 0 and int(res.stdout) == cache, res.stderr
    else:
        assert f"TESSERA_GDAL_CACHEMAX={value!r}: expected a whole number of MB" in res.stderr
