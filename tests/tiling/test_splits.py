import numpy as np

from tessera.tasks.tiling.params import SplitParams
from tessera.tasks.tiling.splits import (
    allocate,
    raster_blocks,
    raster_tile_split,
    slab_splits,
    subject_splits,
)


def _footprints(tiles, size, h, w):
    return [(r, c, min(r + size, h), min(c + size, w), s) for r, c, s in tiles]


def test_overlapping_tiles_never_cross_splits():
    p = SplitParams(block_size=32, seed=4)
    h, w, size, stride = 200, 170, 24, 8
    blocks = raster_blocks("scene", h, w, p)
    tiles = []
    for r in range(0, h, stride):
        for c in range(0, w, stride):
            s = raster_tile_split(blocks, p.block_size, r, c, size, h, w)
            if s is not None:
                tiles.append((r, c, s))
    assert {s for *_, s in tiles} == {"train", "val", "test"}
    fp = _footprints(tiles, size, h, w)
    for i, (r0, c0, r1, c1, s) in enumerate(fp):
        for r0b, c0b, r1b, c1b, sb in fp[i + 1 :]:
            if s != sb:
                assert r1 <= r0b or r1b <= r0 or c1 <= c0b or c1b <= c0


def test_splits_are_seeded():
    p = SplitParams(block_size=16, seed=1)
    a = raster_blocks("x", 100, 100, p)
    assert (a == raster_blocks("x", 100, 100, p)).all()
    assert not (a == raster_blocks("x", 100, 100, SplitParams(block_size=16, seed=2))).all()


def test_allocate_follows_fractions():
    out = allocate(100, {"train": 0.7, "val": 0.15, "test": 0.15}, np.random.default_rng(0))
    assert (out.count("train"), out.count("val"), out.count("test")) == (70, 15, 15)
    few = allocate(3, {"train": 0.8, "val": 0.1, "test": 0.1}, np.random.default_rng(0))
    assert sorted(few) == ["test", "train", "val"]


def test_subjects_and_slabs():
    p = SplitParams(slab_thickness=10, slab_buffer=2)
    subj = subject_splits([f"s{i}" for i in range(20)], p)
    assert len(subj) == 20 and set(subj.values()) == {"train", "val", "test"}
    slices = slab_splits("vol", 100, p)
    for i in range(1, 100):
        a, b = slices[i - 1], slices[i]
        assert a is None or b is None or a == b  # no two adjacent slices in different splits
    kept = [s for s in slices if s is not None]
    assert set(kept) == {"train", "val", "test"}
