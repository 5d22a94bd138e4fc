"""What a tiling task hands back to the flow: a few numbers, whatever the tile count."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tessera.tasks.sources.catalog import inspect_source
from tessera.tasks.sources.specs import SourceSpec
from tessera.tasks.tiling.cut import PartFolders, read_part, tile_scene
from tessera.tasks.tiling.params import TileParams
from tests.helpers import write_geotiff


def test_a_part_hands_back_its_counts_not_its_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scene = write_geotiff(tmp_path / "s.tif", rng.integers(1, 900, (2, 256, 256), np.uint16))
    spec = SourceSpec(name="s", kind="geotiff", paths=[str(scene)])
    (rec,) = inspect_source(spec, tmp_path).records
    sizes = {}
    for size in (64, 8):  # 16 tiles, then 1,024
        params = TileParams(size=size, stride=size, min_valid_fraction=0.0)
        parts = tmp_path / f"parts_{size}"
        split = {"mode": "subject", "split": "train"}
        digest = tile_scene(rec, params, split, PartFolders(parts), tmp_path)
        assert set(digest) == {"name", "scene_id", "source", "counts", "tiles"}
        assert digest["tiles"] == (256 // size) ** 2 == digest["counts"]["kept"]
        full = read_part(parts, digest["name"])  # the rows stay on disk, with the part
        assert len(full["rows"]) == digest["tiles"] and len(full["stats"]) == 2
        sizes[size] = len(json.dumps(digest))
        again = tile_scene(rec, params, split, PartFolders(parts), tmp_path)
        assert again == digest  # a finished part is reused, and answers the same
    assert abs(sizes[8] - sizes[64]) <= 8  # 64 times the tiles, the same few numbers


def test_two_attempts_at_one_part_at_once_leave_one_whole_part(tmp_path: Path) -> None:
    """Dask runs a task again when it counts a worker as lost, possibly while the first
    attempt still writes: each attempt writes its own folder, and the part is whole."""
    rng = np.random.default_rng(1)
    scene = write_geotiff(tmp_path / "s.tif", rng.integers(1, 900, (2, 512, 512), np.uint16))
    spec = SourceSpec(name="s", kind="geotiff", paths=[str(scene)])
    (rec,) = inspect_source(spec, tmp_path).records
    params = TileParams(size=16, stride=16, min_valid_fraction=0.0, shard_tiles=64)
    split = {"mode": "subject", "split": "train"}
    alone = tile_scene(rec, params, split, PartFolders(tmp_path / "alone"), tmp_path, False)
    parts = tmp_path / "parts"
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(tile_scene, rec, params, split, PartFolders(parts), tmp_path, False)
                for _ in range(2)]  # fmt: skip
        digests = [f.result(timeout=120) for f in runs]
    assert digests == [alone, alone]
    assert [p.name for p in parts.iterdir()] == [alone["name"]]  # no attempt's folder left
    whole, ref = parts / alone["name"], tmp_path / "alone" / alone["name"]
    assert sorted(p.name for p in whole.iterdir()) == sorted(p.name for p in ref.iterdir())
    for f in ref.glob("*.npy"):
        assert np.array_equal(np.load(whole / f.name), np.load(f))
