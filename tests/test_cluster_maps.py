"""Cluster ids painted back as a GeoTIFF: same CRS and bounds as the source scene."""

from __future__ import annotations

import numpy as np
import rasterio

from tasks.cluster_maps import write_tile_map
from tasks.store import TileStore
from tests.helpers import write_geotiff


def test_cluster_map_matches_the_source_crs_and_bounds(tmp_path, cli):
    src = write_geotiff(tmp_path / "scene.tif", np.full((48, 80), 9, np.uint16))
    rc, _, err = cli("tile", "--input", src, "--out", tmp_path / "t", "--size", 16, cwd=tmp_path)
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    metas = [store[i]["meta"] for i in range(len(store))]
    ids = np.array([m["row_off"] // 16 * 10 + m["col_off"] // 16 for m in metas])
    out = write_tile_map(tmp_path / "maps" / "clusters.tif", metas, ids, stride=16)
    with rasterio.open(src) as s, rasterio.open(out) as c:
        assert c.crs == s.crs
        assert tuple(c.bounds) == tuple(s.bounds)
        assert c.res == (s.res[0] * 16, s.res[1] * 16)
        grid = c.read(1)
    assert grid.shape == (3, 5)
    assert grid[2, 4] == 24 and grid[0, 0] == 0  # each tile's value lands on its own cell
    assert not list((tmp_path / "maps").glob(".*tmp"))
