"""Random access to a finished tile store (its format: :mod:`tessera.tasks.store.format`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tessera.tasks.store.format import (
    GEO_COLUMNS,
    IGNORE,
    INDEX_FILE,
    StoreInfo,
    label_file,
    stem_of,
    valid_file,
)

Allocator = Callable[[tuple[int, ...], np.dtype], np.ndarray]


def _mapped(path: Path) -> np.ndarray:
    """A read-only memory map of a ``.npy`` file, as a plain ndarray view."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


class TileStore:
    """Random access to the tiles of a store.

    ``s[i]`` returns ``{"image": (C, H, W), "label": (H, W) or None, "valid": (H, W) bool,
    "meta": dict}`` with the source values in the source dtype.
    """

    def __init__(self, root: Path, index: pd.DataFrame, info: StoreInfo) -> None:
        self.root = root
        self.index = index
        self.info = info
        self._shard = index["shard"].to_numpy()
        self._row = index["shard_row"].to_numpy()
        self._has_label = index["has_label"].to_numpy()
        self._meta = self._build_meta(index)
        self._maps: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    @classmethod
    def open(cls, path: str | Path) -> TileStore:
        """Open a finished store."""
        root = Path(path)
        return cls(root, pd.read_parquet(root / INDEX_FILE), StoreInfo.read(root))

    @staticmethod
    def _build_meta(index: pd.DataFrame) -> list[dict[str, Any]]:
        cols = ["tile_id", "scene_id", "source", "split", "row_off", "col_off", "slice"]
        extra = [c for c in GEO_COLUMNS if c in index.columns]
        metas = []
        for rec in index[cols + extra].to_dict("records"):
            m = {k: rec[k] for k in cols if k != "slice"}
            m["row_off"], m["col_off"] = int(m["row_off"]), int(m["col_off"])
            if rec["slice"] >= 0:
                m["slice"] = int(rec["slice"])
            for k in extra:
                v = rec[k]
                if v is not None and not (isinstance(v, float) and np.isnan(v)):
                    m[k] = [float(x) for x in v] if k != "crs" else v
            metas.append(m)
        return metas

    def __len__(self) -> int:
        return len(self.index)

    def _arrays(self, shard: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Memory maps of a shard's image, valid and label files (label None if unlabelled)."""
        arrays = self._maps.get(shard)
        if arrays is None:
            stem = stem_of(self.root / shard)
            label = label_file(stem)
            # plain views of the maps: indexing a np.memmap runs its Python hooks per tile
            arrays = (
                _mapped(self.root / shard),
                _mapped(valid_file(stem)),
                _mapped(label) if label.exists() else None,
            )
            self._maps[shard] = arrays
        return arrays

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        image, valid, label = self._arrays(self._shard[i])
        row = int(self._row[i])
        return {
            "image": np.array(image[row]),
            "label": np.array(label[row]) if label is not None and self._has_label[i] else None,
            "valid": np.array(valid[row]),
            "meta": dict(self._meta[i]),
        }

    def get_batch(
        self,
        indices: Sequence[int] | np.ndarray,
        alloc: Allocator = np.empty,
        image_alloc: Allocator | None = None,
    ) -> dict[str, Any]:
        """Stacked tiles of one channel layout, each copied once straight from its shard.

        ``label`` is None when no tile of the batch is labelled; otherwise unlabelled tiles
        are filled with the ignore value and ``has_label`` says which tiles carry labels.
        ``alloc(shape, dtype)`` makes the valid masks and, unless ``image_alloc`` is given,
        the images (in shared memory, say).
        """
        idx = np.asarray(indices, dtype=np.int64)
        img0 = self._arrays(self._shard[idx[0]])[0]
        n, tile = len(idx), img0.shape[2:]
        image = (image_alloc or alloc)((n, *img0.shape[1:]), img0.dtype)
        valid = alloc((n, *tile), np.dtype(bool))
        has_label = self._has_label[idx].astype(bool)
        label = np.full((n, *tile), IGNORE, dtype=np.uint8) if has_label.any() else None
        for j, i in enumerate(idx):
            image_a, valid_a, label_a = self._arrays(self._shard[i])
            row = self._row[i]
            image[j] = image_a[row]
            valid[j] = valid_a[row]
            if label is not None and label_a is not None and has_label[j]:
                label[j] = label_a[row]
        return {
            "image": image,
            "label": label,
            "has_label": has_label,
            "valid": valid,
            "meta": [self._meta[int(i)] for i in idx],
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state
