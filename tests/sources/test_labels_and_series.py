"""Vector labels, DICOM series folders, and sampled statistics against exact ones."""

import copy
import json

import numpy as np
import pydicom
import pytest
import rasterio
import yaml
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tessera.tasks.store.reader import TileStore
from tests.helpers import L8_ORIGIN, write_geotiff


def test_geojson_label_is_rasterised_on_the_image_grid(tmp_path, cli):
    write_geotiff(tmp_path / "img.tif", np.full((40, 40), 9, np.uint16))
    x0, y0 = L8_ORIGIN
    # A square over pixels rows 10..19, cols 5..14 (30 m pixels), in the image's UTM CRS
    square = [
        [x0 + 5 * 30, y0 - 10 * 30],
        [x0 + 15 * 30, y0 - 10 * 30],
        [x0 + 15 * 30, y0 - 20 * 30],
        [x0 + 5 * 30, y0 - 20 * 30],
        [x0 + 5 * 30, y0 - 10 * 30],
    ]
    (tmp_path / "fields.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "EPSG:32616"}},
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"crop": "wheat"},
                        "geometry": {"type": "Polygon", "coordinates": [square]},
                    }
                ],
            }
        )
    )
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "ingest": {
                    "sources": [
                        {
                            "name": "farm",
                            "kind": "geotiff",
                            "paths": ["img.tif"],
                            "label": {
                                "kind": "vector",
                                "path": "fields.geojson",
                                "class_property": "crop",
                                "classes": ["background", "wheat"],
                            },
                        }
                    ]
                },
                "tile": {"size": 20, "stride": 20, "split": {"block_size": 20}},
            }
        )
    )
    assert cli("ingest", cwd=tmp_path)[0] == 0
    rc, _, err = cli("tile", cwd=tmp_path)
    assert rc == 0, err
    store = TileStore.open(tmp_path / "outputs" / "tiles")
    full = np.zeros((40, 40), np.uint8)
    for i in range(len(store)):
        t = store[i]
        r, c = t["meta"]["row_off"], t["meta"]["col_off"]
        full[r : r + 20, c : c + 20] = t["label"]
    expected = np.zeros((40, 40), np.uint8)
    expected[10:20, 5:15] = 1
    np.testing.assert_array_equal(full, expected)


def test_geojson_outside_the_image_is_an_extent_mismatch(tmp_path, cli):
    write_geotiff(tmp_path / "img.tif", np.full((10, 10), 9, np.uint16))
    far = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]  # lon/lat in the Gulf of Guinea
    (tmp_path / "far.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"class": 1},
                        "geometry": {"type": "Polygon", "coordinates": [far]},
                    }
                ],
            }
        )
    )
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "ingest": {
                    "sources": [
                        {
                            "name": "x",
                            "kind": "geotiff",
                            "paths": ["img.tif"],
                            "label": {
                                "kind": "vector",
                                "path": "far.geojson",
                                "classes": ["bg", "thing"],
                            },
                        }
                    ]
                }
            }
        )
    )
    rc, _, err = cli("ingest", cwd=tmp_path)
    assert rc == 1 and "far.geojson" in err and "extent mismatch" in err
    assert not (tmp_path / "outputs").exists()


def _write_series(folder, z_offsets, instance_numbers=None, edit=None):
    """CT_small's slice at each z offset; ``edit(ds, k)`` changes slice k before saving."""
    folder.mkdir()
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    x0, y0, z0 = (float(v) for v in base.ImagePositionPatient)
    uid = generate_uid()
    for k, dz in enumerate(z_offsets):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        number = (instance_numbers or list(range(1, len(z_offsets) + 1)))[k]
        if number is not None:
            ds.InstanceNumber = number
        else:
            del ds.InstanceNumber
        ds.ImagePositionPatient = [x0, y0, z0 + dz]
        ds.SliceLocation = z0 + dz
        if edit is not None:
            edit(ds, k)
        ds.save_as(folder / f"slice{k}.dcm")
    return folder


def _by_slice(store):
    """Tile of each slice (one tile per slice at this size)."""
    return {store[i]["meta"]["slice"]: store[i] for i in range(len(store))}


def test_dicom_series_folder_becomes_one_volume(tmp_path, cli):
    series = _write_series(tmp_path / "series dir", [0.0, 2.5, 5.0])
    rc, _, err = cli(
        "tile", "--input", series, "--out", tmp_path / "t", "--size", 128, cwd=tmp_path
    )
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    assert sorted(store.index["slice"].unique()) == [0, 1, 2]
    slices = {store[i]["meta"]["slice"]: store[i] for i in range(len(store))}
    affines = [np.array(slices[k]["meta"]["affine"]).reshape(4, 4) for k in range(3)]
    # Slice positions come from ImagePositionPatient (2.5 mm), not SliceThickness (5 mm)
    np.testing.assert_allclose(np.diff([a[2, 3] for a in affines]), 2.5, atol=1e-4)
    np.testing.assert_allclose(affines[0][2, 3], -75.699997, atol=1e-4)


def test_a_series_is_ordered_by_position_whatever_its_instance_numbers(tmp_path, cli):
    def mark(ds, k):  # slice k's pixels all equal k + 1 (raw), so -1023 + k in HU
        ds.PixelData = np.full((ds.Rows, ds.Columns), k + 1, np.int16).tobytes()

    # MONAI's reader ordered by InstanceNumber and skipped a slice without one
    series = _write_series(tmp_path / "s", [0.0, 2.5, 5.0], [3, None, 1], mark)
    out = tmp_path / "t"
    rc, _, err = cli("tile", "--input", series, "--out", out, "--size", 128,
                     "--set", "tile.split.slab_buffer=0", cwd=tmp_path)  # fmt: skip
    assert rc == 0, err
    slices = _by_slice(TileStore.open(out))
    assert sorted(slices) == [0, 1, 2]
    zs = [np.array(slices[k]["meta"]["affine"]).reshape(4, 4)[2, 3] for k in range(3)]
    assert np.all(np.diff(zs) > 0)  # RAS: slice index grows with z
    assert [int(np.unique(slices[k]["image"])[0]) for k in range(3)] == [-1023, -1022, -1021]


def test_a_rescaled_series_keeps_pydicoms_float64_values(tmp_path, cli):
    def rescale(ds, k):
        ds.RescaleSlope, ds.RescaleIntercept = "0.37", "-5.5"

    series = _write_series(tmp_path / "pet", [0.0, 2.5], edit=rescale)
    out = tmp_path / "t"
    rc, _, err = cli("tile", "--input", series, "--out", out, "--size", 128,
                     "--set", "tile.split.slab_buffer=0", cwd=tmp_path)  # fmt: skip
    assert rc == 0, err
    raw = pydicom.dcmread(series / "slice0.dcm").pixel_array.astype(np.float64)
    tile = _by_slice(TileStore.open(out))[0]
    assert tile["image"].dtype == np.float64
    got = np.sort(tile["image"][0][tile["valid"]])
    np.testing.assert_array_equal(got, np.sort((raw * 0.37 - 5.5).ravel()))


def test_a_folder_of_two_series_is_refused(tmp_path, cli):
    def other(ds, k):
        if k == 1:
            ds.SeriesInstanceUID = generate_uid()

    series = _write_series(tmp_path / "mixed", [0.0, 2.5], edit=other)
    rc, _, err = cli("tile", "--input", series, "--out", tmp_path / "t", cwd=tmp_path)
    assert rc == 1 and "mixed" in err and "2 different series" in err


def test_a_dicom_without_preamble_or_file_meta_tiles_like_the_original(tmp_path, cli):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    original = ds.pixel_array
    ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
    pydicom.dcmwrite(tmp_path / "acr_nema.dcm", ds, implicit_vr=True, little_endian=True)
    with pytest.raises(pydicom.errors.InvalidDicomError):  # no preamble, no file meta
        pydicom.dcmread(tmp_path / "acr_nema.dcm")
    out = tmp_path / "t"
    rc, _, err = cli("tile", "--input", tmp_path / "acr_nema.dcm", "--out", out, "--size", 64,
                     cwd=tmp_path)  # fmt: skip
    assert rc == 0, err
    tile = TileStore.open(out)[0]
    assert tile["image"].dtype == np.int16
    np.testing.assert_array_equal(np.sort(tile["image"].ravel()), np.sort(original.ravel()))


def test_irregular_dicom_series_is_refused(tmp_path, cli):
    series = _write_series(tmp_path / "gappy", [0.0, 2.5, 7.5])
    rc, _, err = cli("tile", "--input", series, "--out", tmp_path / "t", cwd=tmp_path)
    assert rc == 1 and "gappy" in err and "irregular slice spacing" in err


def test_absurd_geotiff_header_is_refused(tmp_path, cli):
    p = tmp_path / "huge.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=2_000_000,
        height=16,
        count=1,
        dtype="uint8",
        crs="EPSG:32616",
        tiled=True,
        SPARSE_OK=True,
        transform=rasterio.Affine(30, 0, 0, 0, -30, 0),
    ):
        pass
    assert p.stat().st_size < 1_000_000
    rc, _, err = cli("tile", "--input", p, "--out", tmp_path / "t", cwd=tmp_path)
    assert rc == 1 and "huge.tif" in err and "absurd dimensions" in err


def test_sampled_statistics_track_exact_ones(tmp_path, cli):
    rng = np.random.default_rng(7)
    data = rng.gamma(2.0, 500.0, size=(2, 256, 256)).astype(np.uint16) + 1
    src = write_geotiff(tmp_path / "s.tif", data)
    stats = {}
    for step in (1, 4):
        out = tmp_path / f"t{step}"
        rc, _, err = cli(
            "tile",
            "--input",
            src,
            "--out",
            out,
            "--size",
            64,
            "--set",
            f"tile.stats_row_step={step}",
            cwd=tmp_path,
        )
        assert rc == 0, err
        stats[step] = TileStore.open(out).info.sources["s"].stats["b1"]
    exact, sampled = stats[1], stats[4]
    assert exact["count"] == 256 * 256 and sampled["count"] == 64 * 256
    assert exact["mean"] == pytest.approx(data[0].mean(), rel=1e-12)
    assert sampled["mean"] == pytest.approx(exact["mean"], rel=0.02)
    assert sampled["std"] == pytest.approx(exact["std"], rel=0.03)
    assert sampled["p98"] == pytest.approx(exact["p98"], rel=0.05)
