"""`tessera tile --input …` on files no config has seen: exact pixels and georeferencing."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from tessera.tasks.store.reader import TileStore
from tests.helpers import write_geotiff, write_nifti


def _check_raster_tiles_exact(store, src_path, size):
    with rasterio.open(src_path) as src:
        for i in range(len(store)):
            t = store[i]
            m = t["meta"]
            win = Window(m["col_off"], m["row_off"], size, size)
            expected = src.read(window=win, boundless=True, fill_value=src.nodata or 0)
            np.testing.assert_array_equal(t["image"], expected)
            assert t["image"].dtype == np.dtype(src.dtypes[0])
            assert tuple(m["transform"]) == tuple(window_transform(win, src.transform))[:6]
            assert rasterio.crs.CRS.from_wkt(m["crs"]) == src.crs


@pytest.mark.parametrize(
    "dtype,compress", [("uint16", None), ("float32", "deflate"), ("int16", "lzw")]
)
def test_geotiff_tiles_match_source_exactly(tmp_path, cli, dtype, compress):
    rng = np.random.default_rng(0)
    data = (rng.normal(100, 30, size=(3, 70, 90))).clip(1, None).astype(dtype)
    data[:, :5, :7] = 0  # a nodata corner
    extra = (
        {"compress": compress, "tiled": True, "blockxsize": 32, "blockysize": 32}
        if compress
        else {}
    )
    src = write_geotiff(
        tmp_path / "in dir ünïcode" / "scène 1.tif",
        data,
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 4200000),
        nodata=0,
        **extra,
    )
    out = tmp_path / "my tiles"
    rc, _, err = cli(
        "tile",
        "--input",
        src,
        "--out",
        out,
        "--size",
        32,
        "--stride",
        24,
        "--min-valid-fraction",
        0,
        "--set",
        "tile.stats_row_step=1",
        cwd=tmp_path,
    )
    assert rc == 0, err
    store = TileStore.open(out)
    assert len(store) > 0 and store.index.split.notna().all()
    _check_raster_tiles_exact(store, src, 32)
    # Padding is nodata and marked invalid
    edge = [store[i] for i in range(len(store)) if store[i]["meta"]["row_off"] + 32 > 70]
    assert edge and all(not t["valid"][70 - t["meta"]["row_off"] :].any() for t in edge)
    (source,) = store.info.sources.values()
    stats = source.stats["b1"]
    valid = data[0][data[0] != 0].astype(np.float64)
    assert stats["mean"] == pytest.approx(valid.mean(), rel=1e-6)
    assert stats["count"] == valid.size


def test_nodata_drops_tiles_below_min_valid_fraction(tmp_path, cli):
    data = np.ones((1, 64, 64), dtype=np.uint8)
    data[:, :, 32:] = 0
    src = write_geotiff(tmp_path / "half.tif", data, nodata=0)
    rc, _, err = cli(
        "tile",
        "--input",
        src,
        "--out",
        tmp_path / "t",
        "--size",
        32,
        "--min-valid-fraction",
        0.5,
        "--set",
        "tile.split.block_size=32",
        cwd=tmp_path,
    )
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    assert sorted(store.index.col_off.unique()) == [0]
    assert store.info.counts["half"]["dropped_invalid"] == 2


def _world_of_voxels(affine, ijk):
    return (affine @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]


@pytest.mark.parametrize("axis", [2, 0])
def test_nifti_tiles_carry_exact_affines(tmp_path, cli, axis):
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 1000, size=(20, 24, 18)).astype(np.int16)
    # LPS-ish, oblique: reorientation to RAS must be undone exactly by the tile affines
    a = np.array(
        [[-0.9, 0.1, 0.0, 90.0], [0.05, -1.1, 0.2, 120.0], [0.0, 0.1, 1.3, -60.0], [0, 0, 0, 1.0]]
    )
    src = write_nifti(tmp_path / "brain scan.nii.gz", vol, a)
    rc, _, err = cli(
        "tile",
        "--input",
        src,
        "--out",
        tmp_path / "t",
        "--size",
        16,
        "--axis",
        axis,
        "--min-valid-fraction",
        0,
        cwd=tmp_path,
    )
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    assert len(store) > 0
    inv = np.linalg.inv(a)
    for i in range(0, len(store), 3):
        t = store[i]
        m = np.array(t["meta"]["affine"]).reshape(4, 4)
        rr, cc = np.nonzero(t["valid"])
        world = (m @ np.c_[rr, cc, np.zeros_like(rr), np.ones_like(rr)].T).T[:, :3]
        ijk = np.rint((inv @ np.c_[world, np.ones(len(world))].T).T[:, :3]).astype(int)
        np.testing.assert_array_equal(t["image"][0][rr, cc], vol[ijk[:, 0], ijk[:, 1], ijk[:, 2]])
        assert "slice" in t["meta"] and t["image"].dtype == np.int16


def test_4d_nifti_keeps_channels_and_5d_is_refused(tmp_path, cli):
    vol = np.arange(10 * 12 * 8 * 3, dtype=np.float32).reshape(10, 12, 8, 3)
    src = write_nifti(tmp_path / "multi.nii.gz", vol, np.eye(4))
    rc, _, err = cli(
        "tile",
        "--input",
        src,
        "--out",
        tmp_path / "t",
        "--size",
        8,
        "--min-valid-fraction",
        0,
        cwd=tmp_path,
    )
    assert rc == 0, err
    t = TileStore.open(tmp_path / "t")[0]
    assert t["image"].shape == (3, 8, 8)
    s = t["meta"]["slice"]
    np.testing.assert_array_equal(t["image"][:, :, :], np.moveaxis(vol[:8, :8, s, :], -1, 0))
    bad = write_nifti(tmp_path / "five.nii.gz", np.zeros((4, 4, 4, 2, 2), np.float32), np.eye(4))
    rc, _, err = cli("tile", "--input", bad, "--out", tmp_path / "t5", cwd=tmp_path)
    assert rc == 1 and "five.nii.gz" in err and "5-D" in err
    assert not (tmp_path / "t5").exists()


def test_dicom_sample_tiles(tmp_path, cli):
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    rc, _, err = cli("tile", "--input", ct, "--out", tmp_path / "t", "--size", 64, cwd=tmp_path)
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    assert len(store) == 4
    t = store[0]
    assert t["image"].dtype == np.int16 and t["image"].min() < -500  # Hounsfield units
    m = np.array(t["meta"]["affine"]).reshape(4, 4)
    assert np.allclose(np.linalg.norm(m[:3, :2], axis=0), 0.661468)


def test_stack_of_single_band_files(tmp_path, cli):
    rng = np.random.default_rng(2)
    a = [
        write_geotiff(tmp_path / f"band{i}.tif", rng.integers(1, 9, (40, 40), dtype=np.uint8))
        for i in range(3)
    ]
    rc, _, err = cli(
        "tile",
        "--input",
        a[0],
        "--input",
        a[1],
        "--input",
        a[2],
        "--stack",
        "--out",
        tmp_path / "t",
        "--size",
        20,
        cwd=tmp_path,
    )
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    assert store[0]["image"].shape == (3, 20, 20)
    assert store.info.sources["band0"].bands == ["band0.tif", "band1.tif", "band2.tif"]


def test_label_mask_from_the_command_line(tmp_path, cli):
    img = write_geotiff(tmp_path / "img.tif", np.full((32, 32), 7, np.uint16))
    lab = np.zeros((32, 32), np.uint8)
    lab[8:16] = 2
    lbl = write_geotiff(tmp_path / "mask.tif", lab)
    rc, _, err = cli(
        "tile", "--input", img, "--label", lbl, "--out", tmp_path / "t", "--size", 16, cwd=tmp_path
    )
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    t = next(store[i] for i in range(len(store)) if store[i]["meta"]["row_off"] == 0)
    np.testing.assert_array_equal(t["label"], lab[:16, t["meta"]["col_off"] :][:, :16])
    assert store.info.sources["img"].class_names == ["class_0", "class_1", "class_2"]


def test_params_apply_to_inputs_and_option_errors_name_the_option(tmp_path, cli):
    src = write_geotiff(tmp_path / "a.tif", np.ones((32, 32), np.uint16))
    (tmp_path / "mine.yaml").write_text("tile: {size: 16, stride: 16}\n")
    rc, _, err = cli("tile", "--input", src, "--params", "mine.yaml", "--out", "s", cwd=tmp_path)
    assert rc == 0, err
    assert TileStore.open(tmp_path / "s").info.params.size == 16  # not ignored
    rc, _, err = cli("tile", "--input", src, "--set", "tile.size=-1", cwd=tmp_path)
    assert rc == 1 and err.startswith("tessera: options: invalid config: tile.size")
    rc, _, err = cli("tile", "--input", src, "--size", "2", cwd=tmp_path)
    assert rc == 1 and err.startswith("tessera: options: invalid config: tile.size"), err
    rc, _, err = cli("tile", "--input", src, "--size", "8", "--stride", "9", cwd=tmp_path)
    assert rc == 1 and "stride 9 > size 8" in err and len(err.splitlines()) == 1, err
    assert "nonexistent" not in err
