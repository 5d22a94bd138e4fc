"""Cluster ids painted back as a GeoTIFF: same CRS and bounds as the source scene."""

from __future__ import annotations

import numpy as np
import rasterio

from tessera.tasks.evaluation.cluster_maps import write_tile_map
from tessera.tasks.store.reader import TileStore
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


def _world_box(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World min/max of a voxel grid's outer corners (voxel centres at integer indices)."""
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape[:3]], indexing="ij"))
    pts = np.c_[corners.reshape(3, -1).T, np.ones(8)] @ np.asarray(affine).T
    return np.stack([pts[:, :3].min(0), pts[:, :3].max(0)])


def test_volume_cluster_map_lands_on_the_source_volume(tmp_path, cli):
    import nibabel as nib

    from tessera.tasks.evaluation.cluster_maps import write_volume_tile_map
    from tests.helpers import write_nifti

    # LPS-oriented, anisotropic and shifted: the store reorients to RAS, the map must not move
    affine = np.array([[-0.8, 0, 0, 40.0], [0, -1.2, 0, 25.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    data = np.arange(32 * 24 * 5, dtype=np.float32).reshape(32, 24, 5) + 1
    src = write_nifti(tmp_path / "vol.nii.gz", data, affine)
    rc, _, err = cli("tile", "--input", src, "--out", tmp_path / "t", "--size", 8, cwd=tmp_path)
    assert rc == 0, err
    store = TileStore.open(tmp_path / "t")
    metas = [store[i]["meta"] for i in range(len(store))]
    assert len(metas) == 4 * 3 * 5
    values = np.arange(len(metas))
    out = write_volume_tile_map(tmp_path / "maps" / "c.nii.gz", metas, values, stride=8, axis=2)
    img = nib.load(out)
    grid = np.asarray(img.dataobj)
    assert grid.shape == (4, 3, 5)
    box = _world_box(img.affine, grid.shape)
    np.testing.assert_allclose(box, _world_box(affine, data.shape), atol=1e-4)  # float32 sform
    # each tile's value sits at the voxel whose centre is the centre of the tile's voxels
    for m, v in zip(metas, values, strict=True):
        centre = np.asarray(m["affine"]).reshape(4, 4) @ [3.5, 3.5, 0, 1]
        ijk = np.linalg.solve(img.affine, centre)[:3]
        assert grid[tuple(np.round(ijk).astype(int))] == v
        np.testing.assert_allclose(ijk, np.round(ijk), atol=1e-4)
    assert not list((tmp_path / "maps").glob(".*tmp*"))
