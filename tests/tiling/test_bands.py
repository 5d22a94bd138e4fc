"""A big raster is cut in bands of tile rows, one task each (so several workers share one
scene): the store holds the same tiles, at the same places, as a scene cut in one piece."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tessera.tasks.store.reader import TileStore
from tessera.tasks.tiling import cut
from tests.helpers import write_geotiff


@pytest.mark.parametrize("stride", [16, 12])  # without and with overlap between tile rows
def test_a_scene_cut_in_row_bands_gives_the_tiles_of_one_piece(tmp_path, cli, monkeypatch, stride):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 60000, (3, 150, 70), dtype=np.uint16)
    data[:, 40:60, :30] = 0  # nodata: some tiles dropped
    scene = write_geotiff(tmp_path / "s.tif", data, nodata=0)
    args = ["tile", "--input", scene, "--size", 16, "--stride", stride,
            "--set", "tile.split.block_size=48"]  # fmt: skip
    assert cli(*args, "--out", tmp_path / "whole", cwd=tmp_path)[0] == 0
    monkeypatch.setattr(cut, "BAND_PIXELS", 40 * 70)  # about three tile rows a band
    rc, _, err = cli(*args, "--out", tmp_path / "bands", cwd=tmp_path)
    assert rc == 0, err
    whole, bands = TileStore.open(tmp_path / "whole"), TileStore.open(tmp_path / "bands")
    parts = {s.split("/")[1] for s in bands.index["shard"]}
    assert len(parts) > 3  # it was cut in bands
    where = ["shard", "shard_row"]  # storage: which shard file, which row of it
    pd.testing.assert_frame_equal(whole.index.drop(columns=where), bands.index.drop(columns=where))
    for i in range(len(whole)):
        np.testing.assert_array_equal(whole[i]["image"], bands[i]["image"])
        np.testing.assert_array_equal(whole[i]["valid"], bands[i]["valid"])
    assert whole.info.counts == bands.info.counts
    a, b = whole.info.sources["s"].stats, bands.info.sources["s"].stats
    for band in a:
        for k, v in a[band].items():
            assert b[band][k] == pytest.approx(v, rel=1e-9), (band, k)
