import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from tessera.tasks.tiling.grid import TileGrid, tile_transform, volume_tile_affine


def test_grid_covers_far_edges_with_padding():
    g = TileGrid(height=100, width=70, size=32, stride=32)
    assert g.row_offsets == [0, 32, 64, 96]
    assert g.col_offsets == [0, 32, 64]
    assert len(g) == 12


def test_grid_with_overlap_reaches_the_edge_once():
    g = TileGrid(height=64, width=64, size=32, stride=16)
    assert g.row_offsets == [0, 16, 32]
    assert TileGrid(10, 10, 32, 16).row_offsets == [0]


def test_stride_larger_than_size_is_refused():
    with pytest.raises(ValueError):
        TileGrid(10, 10, 4, 8)


def test_tile_transform_is_rasterio_window_transform():
    t = Affine(10.0, 0.0, 435730.0, 0.0, -10.0, 4179460.0)
    for r, c in ((0, 0), (64, 128), (1000, 3)):
        expected = window_transform(Window(c, r, 64, 64), t)
        assert tile_transform(t, r, c) == tuple(expected)[:6]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_volume_tile_affine_maps_tile_pixels_to_source_voxels(axis):
    rng = np.random.default_rng(0)
    affine = np.eye(4)
    affine[:3, :3] = rng.normal(size=(3, 3))
    affine[:3, 3] = rng.normal(size=3) * 100
    m = volume_tile_affine(affine, axis, index=7, row_off=16, col_off=32)
    rows_ax, cols_ax = [a for a in range(3) if a != axis]
    for r, c in ((0, 0), (5, 9)):
        voxel = np.zeros(4)
        voxel[[rows_ax, cols_ax, axis]] = (16 + r, 32 + c, 7)
        voxel[3] = 1
        assert np.allclose(m @ [r, c, 0, 1], affine @ voxel)
    assert abs(np.linalg.det(m)) > 0
