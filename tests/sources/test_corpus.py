"""A corpus of the files other projects test with, through `tessera tile`: each gives exact tiles
(values in the source dtype, every pixel where the source's geometry puts it) or one clean line.

Rasters and NIfTI volumes are generated here (every dtype, byte orders, scaling, alpha, internal
masks, tiny images, NIfTI-2, 2-D, 4-D, a NIfTI pair); a few of pydicom's own test files join them.
Every file of nibabel's and pydicom's test data is tiled in test_package_corpus.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from tessera.tasks.store.reader import TileStore
from tests.helpers import write_geotiff
from tests.sources.references import check_scene, dicom_reference, nifti_reference

SIZE = 8
DICOM_DIR = Path(pydicom.__file__).parent / "data" / "test_files"
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4200000.0)

GOOD_DICOM = ["CT_small.dcm", "rtdose.dcm", "SC_rgb_rle.dcm"]  # rescaled, multi-frame, colour
BAD_DICOM = {"MR_truncated.dcm": "truncated", "JPEG-lossy.dcm": "cannot decode"}


def _rasters(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {}
    for dt in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"):
        info = np.iinfo(dt) if np.dtype(dt).kind in "iu" else None
        lo, hi = (info.min + 1, info.max) if info else (-1e6, 1e6)
        a = rng.uniform(lo, hi, size=(2, 19, 13)).astype(dt)
        files[f"r_{dt}"] = write_geotiff(d / f"r_{dt}.tif", a, transform=T)
    a = rng.integers(1, 60000, size=(2, 12, 10), dtype=np.uint16)
    files["r_bigendian"] = write_geotiff(d / "r_bigendian.tif", a, transform=T, ENDIANNESS="BIG")
    files["r_deflate_tiled"] = write_geotiff(
        d / "r_deflate_tiled.tif", rng.integers(1, 9, (1, 40, 40)).astype(np.uint8),
        transform=T, compress="deflate", tiled=True, blockxsize=16, blockysize=16,
    )  # fmt: skip
    f = rng.normal(size=(1, 16, 16)).astype(np.float32)
    f[0, :4] = np.nan
    files["r_nan"] = write_geotiff(d / "r_nan.tif", f, transform=T, nodata=float("nan"))
    files["r_tiny"] = write_geotiff(d / "r_tiny.tif", np.arange(15, dtype=np.uint8).reshape(3, 5))
    rgb = rng.integers(1, 255, (3, 16, 16), dtype=np.uint8)
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:8, :8] = 255
    path = d / "r_alpha.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=16, height=16, count=4, dtype="uint8",
        crs="EPSG:32633", transform=T, photometric="RGB",
    ) as ds:  # fmt: skip
        ds.write(rgb, [1, 2, 3])
        ds.write(alpha, 4)
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    files["r_alpha"] = path
    path = d / "r_mask.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(
            path, "w", driver="GTiff", width=16, height=16, count=3, dtype="uint8",
            crs="EPSG:32633", transform=T,
        ) as ds:  # fmt: skip
            ds.write(rgb)
            ds.write_mask(alpha)
    files["r_mask"] = path
    return files


def _bad_rasters(d: Path) -> dict[Path, str]:
    one = np.ones((1, 8, 8), np.uint8)
    gcps = [GroundControlPoint(0, 0, 10, 50), GroundControlPoint(8, 0, 11, 50),
            GroundControlPoint(0, 8, 10, 49)]  # fmt: skip
    gcp = d / "bad_gcps.tif"
    with rasterio.open(
        gcp, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8",
        gcps=gcps, crs="EPSG:4326",
    ) as ds:  # fmt: skip
        ds.write(one)
    nocrs = write_geotiff(d / "bad_nocrs.tif", one, crs=None, transform=Affine.identity())
    good = write_geotiff(d / "tmp_good.tif", np.ones((1, 64, 64), np.uint16), transform=T)
    corrupt = d / "bad_corrupt.tif"
    corrupt.write_bytes(good.read_bytes()[:2000])
    good.unlink()
    empty = d / "bad_empty.tif"
    empty.write_bytes(b"")
    nodata = write_geotiff(d / "bad_allnodata.tif", np.zeros((1, 8, 8), np.uint8), nodata=0)
    return {
        gcp: "GCPs only",
        nocrs: "not georeferenced",
        corrupt: "corrupt",
        empty: "empty file",
        nodata: "no valid pixel",
    }


def scaled_uint8(raw: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A uint8 NIfTI whose voxels mean ``raw * 0.37 + 5.5``."""
    img = nib.Nifti1Image(raw, affine)
    img.header.set_slope_inter(0.37, 5.5)
    return img


def _niftis(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    aff = np.diag([2.0, 3.0, 4.0, 1.0])
    aff[:3, 3] = [-10, 20, 5]
    lps = np.diag([-1.5, -1.5, 2.0, 1.0])  # LPS on disk: reoriented to RAS when tiled
    lps[:3, 3] = [30, 40, -7]
    files = {}

    def save(name: str, img: nib.Nifti1Image) -> None:
        files[name] = d / f"{name}.nii.gz"
        nib.save(img, str(files[name]))

    save("n_uint8", nib.Nifti1Image(rng.integers(0, 255, (9, 10, 3)).astype(np.uint8), aff))
    save("n_uint16", nib.Nifti1Image(rng.integers(0, 65535, (9, 10, 3)).astype(np.uint16), aff))
    save("n_float64", nib.Nifti1Image(rng.normal(size=(9, 10, 3)), lps))
    big = nib.Nifti1Image(rng.integers(-3000, 3000, (9, 10, 3)).astype(">i2"), lps)
    save("n_bigendian", big)
    scaled = nib.Nifti1Image(rng.integers(-100, 100, (9, 10, 3)).astype(np.int16), aff)
    scaled.header.set_slope_inter(0.37, -12.5)
    save("n_scaled", scaled)
    save("n_scaled_uint8", scaled_uint8(rng.integers(0, 255, (9, 10, 3)).astype(np.uint8), aff))
    save("n_2d", nib.Nifti1Image(rng.integers(0, 999, (9, 10)).astype(np.int16), aff))
    pair = nib.Nifti1Pair(rng.integers(0, 255, (9, 10, 3)).astype(np.uint8), lps)
    files["n_pair"] = d / "n_pair.hdr"
    nib.save(pair, str(files["n_pair"]))  # n_pair.hdr and n_pair.img
    save("n_4d", nib.Nifti1Image(rng.integers(0, 99, (9, 10, 3, 2)).astype(np.int16), aff))
    save("n_nifti2", nib.Nifti2Image(rng.normal(size=(9, 10, 3)).astype(np.float32), lps))
    return files


def _bad_niftis(d: Path) -> dict[Path, str]:
    good = d / "tmp.nii"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), np.eye(4)), str(good))
    truncated = d / "bad_truncated.nii"
    truncated.write_bytes(good.read_bytes()[:3000])
    good.unlink()
    junk = d / "bad_junk.nii"
    junk.write_bytes(b"not a nifti at all" * 40)
    return {truncated: "truncated", junk: "not a readable NIfTI"}


@pytest.fixture(scope="module")
def corpus(prefect_api: str, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("corpus")
    good: dict[str, Path] = {**_rasters(d), **_niftis(d)}
    for name in GOOD_DICOM:
        good[name.removesuffix(".dcm")] = Path(shutil.copy(DICOM_DIR / name, d / name))
    bad = {**_bad_rasters(d), **_bad_niftis(d)}
    for name, why in BAD_DICOM.items():
        bad[Path(shutil.copy(DICOM_DIR / name, d / name))] = why
    return d, good, bad


def _raster_expected(path: Path, m: dict) -> np.ndarray:
    with rasterio.open(path) as src:
        alpha = {i for i, ci in enumerate(src.colorinterp, 1) if ci == ColorInterp.alpha}
        bands = [i for i in range(1, src.count + 1) if i not in alpha]
        win = Window(m["col_off"], m["row_off"], SIZE, SIZE)
        fill = src.nodata if src.nodata is not None and not np.isnan(src.nodata) else 0
        return src.read(bands, window=win, boundless=True, fill_value=fill)


def test_every_file_gives_exact_tiles_or_one_line(corpus, cli):
    d, good, bad = corpus
    out = d / "store"
    args = [a for p in [*good.values(), *bad] for a in ("--input", p)]
    rc, _, err = cli(
        "tile", *args, "--out", out, "--size", SIZE, "--min-valid-fraction", 0.01,
        "--on-bad-input", "skip", "--set", "tile.split.slab_buffer=0", cwd=d,
    )  # fmt: skip
    assert rc == 0, err
    store = TileStore.open(out)
    rejected = {
        Path(x["path"]).name: x["reason"] for x in json.loads((out / "rejected.json").read_text())
    }
    for path, why in bad.items():
        assert path.name in rejected, f"{path.name} was not refused"
        assert why in rejected[path.name] and "\n" not in rejected[path.name], rejected[path.name]
        assert "previous exception" not in rejected[path.name]  # GDAL's own words instead
    assert len(rejected) == len(bad), rejected
    index = store.index
    for name, path in good.items():
        rows = np.flatnonzero(index["scene_id"].to_numpy() == name)
        assert len(rows), f"{name}: no tile"
        if path.suffix == ".tif":
            with rasterio.open(path) as src:
                dtype = np.dtype(src.dtypes[0]).newbyteorder("=")
            for i in rows:
                t = store[int(i)]
                assert t["image"].dtype == dtype, name
                np.testing.assert_array_equal(t["image"], _raster_expected(path, t["meta"]))
            continue
        if path.suffix == ".dcm":
            src, src_affine = dicom_reference(path)
            unscaled = src.dtype.kind != "f"
        else:
            src, src_affine, unscaled = nifti_reference(path)
        if unscaled:  # raw values keep their own type; scaled ones are compared as values
            dtype = store[int(rows[0])]["image"].dtype
            assert dtype == src.dtype.newbyteorder("="), (name, dtype)
        check_scene(store, rows, src, src_affine)


def test_a_scaled_nifti_is_stored_as_the_values_it_means(tmp_path, cli):
    raw = np.full((4, 4, 2), 40, np.uint8)
    raw[0, 0, 0] = 0
    nib.save(scaled_uint8(raw, np.eye(4)), str(tmp_path / "scaled.nii.gz"))
    out = tmp_path / "store"
    rc, _, err = cli("tile", "--input", tmp_path / "scaled.nii.gz", "--out", out, "--size", 4,
                     "--set", "tile.split.slab_buffer=0", cwd=tmp_path)  # fmt: skip
    assert rc == 0, err
    store = TileStore.open(out)
    values = np.concatenate([store[i]["image"].ravel() for i in range(len(store))])
    # nibabel's scl_slope is float32: 0.37 is stored as 0.3700000047...
    assert sorted(set(np.round(values, 5))) == [5.5, 20.3]


def test_alpha_and_internal_masks_decide_validity(corpus, cli):
    d, good, _ = corpus
    for name in ("r_alpha", "r_mask"):
        out = d / f"{name}_store"
        rc, _, err = cli("tile", "--input", good[name], "--out", out, "--size", SIZE, cwd=d)
        assert rc == 0, err
        store = TileStore.open(out)
        assert store.info.sources[name].bands == ["b1", "b2", "b3"]  # alpha is no band
        assert len(store) == 1  # three of the four tiles are transparent
        assert store[0]["valid"].all() and store[0]["meta"]["row_off"] == 0


def test_an_image_smaller_than_the_window_is_one_padded_tile(corpus, cli):
    d, good, _ = corpus
    out = d / "tiny_store"
    rc, _, err = cli("tile", "--input", good["r_tiny"], "--out", out, "--size", 32, cwd=d)
    assert rc == 0, err
    t = TileStore.open(out)[0]
    assert t["valid"].sum() == 15 and t["image"][0, 2, 4] == 14


def test_no_tile_at_all_is_a_failure_with_the_reason(corpus, cli):
    d, good, _ = corpus
    out = d / "empty_store"
    rc, _, err = cli(
        "tile", "--input", good["r_nan"], "--out", out, "--size", 16,
        "--min-valid-fraction", 0.9, cwd=d,
    )  # fmt: skip
    assert rc == 1 and "0 tiles from r_nan" in err and "valid pixels" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not (d / "empty_store.tmp").exists()


@pytest.mark.parametrize("name", ["bad_corrupt.tif", "JPEG-lossy.dcm", "bad_gcps.tif"])
def test_a_bad_file_alone_fails_in_one_line(corpus, cli, name):
    d, _, bad = corpus
    path = next(p for p in bad if p.name == name)
    rc, _, err = cli("tile", "--input", path, "--out", d / f"x_{name}", cwd=d)
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and bad[path] in lines[0], err


def test_a_folder_of_geotiffs_is_tiled_file_by_file(corpus, cli):
    d, good, _ = corpus
    folder = d / "folder_of_tifs"
    folder.mkdir()
    for name in ("r_uint16", "r_bigendian"):  # both uint16
        shutil.copy(good[name], folder / f"{name}.tif")
    rc, _out, err = cli("tile", "--input", folder, "--out", d / "folder_store", "--size", SIZE)
    assert rc == 0, err
    assert set(TileStore.open(d / "folder_store").index["scene_id"]) == {
        "folder_of_tifs/r_bigendian",
        "folder_of_tifs/r_uint16",
    }


def test_a_dicom_run_prints_only_its_result(corpus, tmp_path, subprocess_env):
    _d, good, _ = corpus
    res = subprocess.run(
        [str(Path(sys.executable).parent / "tessera"), "tile", "--input", good["CT_small"],
         "--out", tmp_path / "ct", "--size", "32"],
        cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr  # no MONAI/pydicom warnings, no progress-bar escapes
    assert res.stdout.startswith("tile store: ") and "\x1b" not in res.stdout


def test_a_folder_of_mixed_dtypes_is_refused_naming_the_source(corpus, cli):
    d, good, _ = corpus
    folder = d / "mixed"
    folder.mkdir()
    for name in ("r_uint8", "r_int16"):
        shutil.copy(good[name], folder / f"{name}.tif")
    rc, _, err = cli("tile", "--input", folder, "--out", d / "mixed_store", "--size", SIZE)
    assert (
        rc == 1
        and "source 'mixed'" in err
        and "uint8, int16" in err.replace("int16, uint8", "uint8, int16")
    )
