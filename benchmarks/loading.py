"""Loading benchmarks: DataLoader over the store, torch's worker hand-over, memcpy."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scenes import BANDS, TILE


def _loader(ds: object, workers: int, batches: int) -> Callable[[], float]:
    """A function that times one pass (tiles/s) of random batches of 32 from ``ds`` through
    one DataLoader (its sampler draws new random batches each pass)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from tessera.models.data.tiles import collate_batch

    sampler = RandomSampler(
        ds,
        replacement=True,
        num_samples=32 * batches,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(0),
    )
    dl = DataLoader(
        ds,
        batch_size=32,
        sampler=sampler,
        num_workers=workers,  # type: ignore[arg-type]
        collate_fn=collate_batch,
        persistent_workers=workers > 0,
    )

    def one_pass() -> float:
        it = iter(dl)
        next(it)  # worker start-up is not throughput
        t0 = time.perf_counter()
        n = sum(len(b["image"]) for b in it)
        return n / (time.perf_counter() - t0)

    return one_pass


def _timed_passes(ds: object, workers: int, batches: int) -> tuple[float, float]:
    """(first pass, second pass) tiles/s of random batches of 32 through a DataLoader."""
    one_pass = _loader(ds, workers, batches)
    return one_pass(), one_pass()


def bench_loading(store_dir: Path, workers: int, batches: int = 60) -> tuple[float, float]:
    """Random batches of 32 from the store (raw values): (cold, steady) tiles/s.

    The first pass pays the page faults of fresh shard mappings in every worker; the second,
    with persistent workers, is the steady state of training.
    """
    from tessera.models.data.tiles import TileDataset

    return _timed_passes(TileDataset(store_dir, normalisation="none"), workers, batches)


def steady_loading(store_dir: Path, batches: int) -> Callable[[], float]:
    """A function that times one steady pass (tiles/s) of random batches of 32 from the store
    in this process, after one untimed pass that pays the shard mappings' page faults."""
    from tessera.models.data.tiles import TileDataset

    one_pass = _loader(TileDataset(store_dir, normalisation="none"), 0, batches)
    one_pass()
    return one_pass


def bench_worker_ceiling(workers: int = 2, batches: int = 60) -> float:
    """Steady tiles/s that torch workers can hand over at all: ready batches, no reading."""
    import torch
    from torch.utils.data import Dataset

    class Ready(Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 1024

        def __getitems__(self, idx: list[int]) -> dict[str, object]:
            return {
                "image": torch.empty((len(idx), BANDS, TILE, TILE), dtype=torch.int16),
                "label": None,
                "meta": [],
            }

    return _timed_passes(Ready(), workers, batches)[1]


def tiles_in_ram(store_dir: Path) -> np.ndarray:
    """Every tile of a part's image shards, in one array in memory."""
    return np.concatenate([np.load(s) for s in sorted(store_dir.glob("*.image.npy"))])


def bench_memcpy(store_dir: Path | np.ndarray, batches: int = 60, fresh: bool = True) -> float:
    """The memcpy limit: copying the same bytes (random tiles) from RAM with numpy into
    batches of 32; the part's folder, or its tiles already in memory (:func:`tiles_in_ram`).

    ``fresh``: each batch into a new array, as a loader hands each batch over (its consumer
    holds the last one); else every batch into one array, which stays in the CPU's cache (a
    16 MB batch here, in a 32 MB L3 shared with the host's other tenants) and ran 1.3-1.7x
    faster, by how much depending on the host's moment."""
    src = tiles_in_ram(store_dir) if isinstance(store_dir, Path) else store_dir
    rng = np.random.default_rng(0)
    dst = np.empty((32, *src.shape[1:]), dtype=src.dtype)
    picks = rng.integers(0, len(src), (batches, 32))
    t0 = time.perf_counter()
    for batch in picks:
        if fresh:
            dst = np.empty((32, *src.shape[1:]), dtype=src.dtype)
        for j, k in enumerate(batch):
            np.copyto(dst[j], src[k])
    return 32 * batches / (time.perf_counter() - t0)


def publish(part: Path, store: Path, rec: Any, params: Any) -> None:
    """A one-part store around a tiled part, published as the tile flow publishes it."""
    from tessera.tasks.store.writer import staging_dir
    from tessera.tasks.tiling.publication import publish_store

    tmp = staging_dir(store)
    (tmp / "parts").mkdir(parents=True, exist_ok=True)
    shutil.copytree(part, tmp / "parts" / part.name)
    publish_store(store, tmp, [rec], [part.name], params, [])
