"""Seeded, leakage-free splits: spatial blocks for rasters, subjects or slabs for volumes."""

from __future__ import annotations

import zlib

import numpy as np

from tessera.tasks.tiling.params import SplitParams


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def allocate(n: int, fractions: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Shuffle ``n`` units into splits by largest remainder; each used split gets one if it can."""
    names = [k for k, v in fractions.items() if v > 0]
    raw = np.array([fractions[k] * n for k in names])
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if n >= len(names):
        for i in range(len(names)):
            while counts[i] == 0:
                j = int(np.argmax(counts))
                counts[j] -= 1
                counts[i] += 1
    labels = [name for name, c in zip(names, counts, strict=True) for _ in range(c)]
    order = rng.permutation(n)
    return [labels[i] for i in order]


def raster_blocks(scene_id: str, height: int, width: int, p: SplitParams) -> np.ndarray:
    """Split name of each ``block_size`` block of a scene, shape (block rows, block cols)."""
    nr, nc = -(-height // p.block_size), -(-width // p.block_size)
    return np.array(allocate(nr * nc, p.fractions, _rng(p.seed, scene_id)), dtype=object).reshape(
        nr, nc
    )


def raster_tile_split(
    blocks: np.ndarray,
    block_size: int,
    row_off: int,
    col_off: int,
    size: int,
    height: int,
    width: int,
) -> str | None:
    """The split of every block the tile's footprint touches, or None when they differ."""
    r1, c1 = min(row_off + size, height) - 1, min(col_off + size, width) - 1
    touched = blocks[
        row_off // block_size : r1 // block_size + 1, col_off // block_size : c1 // block_size + 1
    ]
    first = touched.flat[0]
    return str(first) if all(t == first for t in touched.flat) else None


def subject_splits(scene_ids: list[str], p: SplitParams) -> dict[str, str]:
    """One split per subject (volume)."""
    ids = sorted(scene_ids)
    return dict(zip(ids, allocate(len(ids), p.fractions, _rng(p.seed, "|".join(ids))), strict=True))


def slab_splits(scene_id: str, n_slices: int, p: SplitParams) -> list[str | None]:
    """Split of each slice of a single subject: contiguous slabs, borders buffered to None."""
    n_slabs = -(-n_slices // p.slab_thickness)
    slabs = allocate(n_slabs, p.fractions, _rng(p.seed, scene_id))
    per_slice = [slabs[i // p.slab_thickness] for i in range(n_slices)]
    out: list[str | None] = []
    for i, s in enumerate(per_slice):
        near = per_slice[max(0, i - p.slab_buffer) : i + p.slab_buffer + 1]
        out.append(s if all(x == s for x in near) else None)
    return out


def uses_subject_splits(n_subjects: int, p: SplitParams) -> bool:
    """Split volumes by subject when there are enough subjects for every split."""
    return n_subjects >= sum(1 for v in p.fractions.values() if v > 0)
