import numpy as np
import pandas as pd
import rasterio
import yaml

from tessera.tasks.sources.catalog import read_catalog
from tessera.tasks.store.reader import TileStore
from tests.helpers import landsat_like, landsat_qa_source

LANDSAT_SOURCE = landsat_qa_source("l8", "scene/l8_B*.tif", "scene/l8_BQA.tif")


def _params(tmp_path, sources, **tile):
    p = tmp_path / "params.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "ingest": {"sources": sources},
                "tile": {
                    "size": 16,
                    "stride": 16,
                    "min_valid_fraction": 0.0,
                    "split": {"block_size": 16},
                    **tile,
                },
            }
        )
    )
    return p


def test_ingest_band_stack_resamples_only_off_grid_bands(tmp_path, cli):
    files = landsat_like(tmp_path / "scene")
    params = _params(tmp_path, [LANDSAT_SOURCE])
    rc, _out, err = cli("ingest", "--params", params, cwd=tmp_path)
    assert rc == 0, err
    (rec,) = read_catalog(tmp_path / "outputs" / "catalog.parquet")
    assert rec.band_names == ["B1", "B2", "B3", "B4", "B8"]
    assert rec.resampled_bands == ["B8"]
    assert rec.shape == [5, 45, 50] and rec.dtype == "uint16"
    assert rec.transform == [30.0, 0.0, 452475.0, 0.0, -30.0, 3408645.0]
    assert "32616" in (rec.crs_wkt or "") or "UTM zone 16N" in (rec.crs_wkt or "")
    assert rec.class_names == ["clear", "cloud", "cirrus", "water"]
    assert len(rec.sha256) == 5 and all(len(h) == 64 for h in rec.sha256)
    assert rec.valid_fraction == 42 / 45
    df = pd.read_parquet(tmp_path / "outputs" / "catalog.parquet")
    for col in (
        "files",
        "sha256",
        "shape",
        "dtype",
        "band_names",
        "crs_wkt",
        "transform",
        "resolution",
        "bounds",
        "nodata",
        "label_kind",
        "class_names",
    ):
        assert col in df.columns

    rc, _out, err = cli("tile", "--params", params, cwd=tmp_path)
    assert rc == 0, err
    store = TileStore.open(tmp_path / "outputs" / "tiles")
    with rasterio.open(files["B3"]) as b3, rasterio.open(files["B8"]) as b8:
        pan = b8.read(1).astype(np.float64)
        for i in range(len(store)):
            t = store[i]
            r, c = t["meta"]["row_off"], t["meta"]["col_off"]
            win = rasterio.windows.Window(c, r, 16, 16)
            np.testing.assert_array_equal(
                t["image"][2], b3.read(1, window=win, boundless=True, fill_value=0)
            )
            h, w = min(16, 45 - r), min(16, 50 - c)
            # B8 averaged 2×2 onto the 30 m grid (rounded into uint16 by GDAL)
            ref = pan[2 * r : 2 * (r + h), 2 * c : 2 * (c + w)].reshape(h, 2, w, 2).mean((1, 3))
            assert np.abs(t["image"][4][:h, :w] - ref).max() <= 1.0
    labelled = [
        store[i]
        for i in range(len(store))
        if store[i]["meta"]["row_off"] == 0 and store[i]["meta"]["col_off"] == 0
    ]
    lab = labelled[0]["label"]
    assert (lab[:3] == 255).all()  # designated fill is ignored
    assert lab[12, 12] == 1 and lab[10, 15] == 1  # cloud wins over water beneath


def test_qa_rules_on_the_label_match_bit_arithmetic(tmp_path, cli):
    files = landsat_like(tmp_path / "scene")
    params = _params(tmp_path, [LANDSAT_SOURCE])
    assert cli("ingest", "--params", params, cwd=tmp_path)[0] == 0
    assert cli("tile", "--params", params, cwd=tmp_path)[0] == 0
    store = TileStore.open(tmp_path / "outputs" / "tiles")
    with rasterio.open(files["BQA"]) as ds:
        qa = ds.read(1)
    expected = np.zeros_like(qa, dtype=np.uint8)
    expected[((qa >> 4) & 3) >= 2] = 3
    expected[((qa >> 12) & 3) >= 2] = 2
    expected[((qa >> 14) & 3) >= 2] = 1
    expected[(qa & 1) == 1] = 255
    for i in range(len(store)):
        t = store[i]
        r, c = t["meta"]["row_off"], t["meta"]["col_off"]
        h, w = min(16, 45 - r), min(16, 50 - c)
        np.testing.assert_array_equal(t["label"][:h, :w], expected[r : r + h, c : c + w])
        assert (t["label"][h:, :] == 255).all() and (t["label"][:, w:] == 255).all()
        assert not t["valid"][h:, :].any()
