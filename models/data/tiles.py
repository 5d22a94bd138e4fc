"""Torch access to a tile store: batched reads, normalised by a named scheme."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from tessera.models.data.normalisation import (
    Normalisation,
    apply,
    clip_bounds,
    image_params,
    normalisation_params,
    per_image,
)
from tessera.tasks.store.format import IGNORE
from tessera.tasks.store.reader import Allocator, TileStore


def shared_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An empty array over a tensor in shared memory. A DataLoader worker's batch made of
    these crosses to the training process as it is: torch copies any other tensor into shared
    memory first (its ``default_collate`` allocates the same way, for the same reason)."""
    like = torch.from_numpy(np.empty(0, dtype))
    storage = like._typed_storage()._new_shared(int(np.prod(shape)))  # as default_collate
    return like.new(storage).view(shape).numpy()


def tensor_of(array: np.ndarray) -> torch.Tensor:
    """The tensor of an array from :func:`shared_empty` (still in shared memory), else a
    tensor over the array (``torch.from_numpy``, which would not know it is shared)."""
    base = array.base
    if isinstance(base, torch.Tensor) and base.is_shared() and base.shape == array.shape:
        return base
    return torch.from_numpy(array)


class TileDataset(Dataset[dict[str, Any]]):
    """Tiles of one channel layout (a selection of sources and splits) as torch tensors.

    Indexing one item returns a sample dict; the DataLoader's batched path
    (``__getitems__``) reads each shard once per batch and returns a ready batch.
    ``targets`` (one tile class per store row, -1 for none) adds a ``target`` entry.
    Pixels outside the valid mask are zero after normalisation.
    """

    def __init__(
        self,
        store: TileStore | str | Path,
        sources: Sequence[str] | None = None,
        splits: Sequence[str] | None = None,
        normalisation: Normalisation = "zscore",
        targets: np.ndarray | None = None,
    ) -> None:
        self.store = store if isinstance(store, TileStore) else TileStore.open(store)
        idx = self.store.index
        mask = np.ones(len(idx), dtype=bool)
        if sources is not None:
            mask &= idx["source"].isin(list(sources)).to_numpy()
        if splits is not None:
            mask &= idx["split"].isin(list(splits)).to_numpy()
        self.indices = np.flatnonzero(mask)
        chosen = sorted(set(idx["source"].to_numpy()[self.indices]))
        layouts = {tuple(self.store.info.sources[s].bands) for s in chosen}
        if len(layouts) > 1:
            raise ValueError(f"sources {chosen} have different channel layouts")
        self.normalisation = normalisation
        self.targets = targets
        self._shift: torch.Tensor | None = None
        self._scale: torch.Tensor | None = None
        self._clip: np.ndarray | None = None
        self._scene_of_row: np.ndarray | None = None
        if chosen and normalisation != "none":
            self._fit(chosen, normalisation)

    @property
    def scale(self) -> torch.Tensor | None:
        """The per-band divisor of the normalisation, (C, 1, 1): per image, the scenes' mean
        (None: not normalised)."""
        if self._scale is not None and self._scene_of_row is not None:
            return self._scale.mean(dim=0)
        return self._scale

    def _fit(self, chosen: list[str], how: Normalisation) -> None:
        """The store's (shift, scale) per band, or one per scene for a per-image scheme."""
        info = self.store.info.sources[chosen[0]]
        as_t = lambda v: torch.tensor(v, dtype=torch.float32).view(-1, 1, 1)  # noqa: E731
        if not per_image(how):
            shift, scale = normalisation_params(info.stats, info.bands, how)
            self._shift, self._scale = as_t(shift), as_t(scale)
            bounds = clip_bounds(info.stats, info.bands, how)
            self._clip = np.asarray(bounds, dtype=np.float32) if bounds else None
            return
        idx = self.store.index
        scenes = idx["scene_id"].astype(str).to_numpy()
        names = sorted(set(scenes[self.indices]))
        params = [self._scene_params(np.flatnonzero(scenes == n), info.bands, how) for n in names]
        self._shift = torch.stack([as_t(p[0]) for p in params])
        self._scale = torch.stack([as_t(p[1]) for p in params])
        lookup = {n: i for i, n in enumerate(names)}
        self._scene_of_row = np.array([lookup.get(n, -1) for n in scenes], dtype=np.int64)

    def _scene_params(
        self, rows: np.ndarray, bands: list[str], how: Normalisation
    ) -> tuple[list[float], list[float]]:
        """One scene's (shift, scale) over all its tiles in the store, of every split: the
        whole image, as ``tessera predict`` sees it (no labels are read)."""
        step = 256
        pieces = (
            (b["image"], b["valid"])
            for b in (self.store.get_batch(rows[i : i + step]) for i in range(0, len(rows), step))
        )
        return image_params(pieces, bands, how)

    def __len__(self) -> int:
        return len(self.indices)

    def _image(
        self, image: np.ndarray, valid: np.ndarray, rows: np.ndarray, alloc: Allocator = np.empty
    ) -> torch.Tensor:
        if self._shift is None or self._scale is None:
            return tensor_of(image)
        shift, scale = self._shift, self._scale
        if self._scene_of_row is not None:
            at = torch.as_tensor(self._scene_of_row[rows])
            shift, scale = shift[at], scale[at]
        out = alloc(image.shape, np.dtype(np.float32))
        apply(image, valid, shift.numpy(), scale.numpy(), self.normalisation, self._clip, out)
        return tensor_of(out)

    def _target(self, rows: np.ndarray) -> torch.Tensor | None:
        if self.targets is None:
            return None
        return torch.from_numpy(self.targets[rows].astype(np.int64))

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        s = self.store[row]
        label = s["label"]
        return {
            "image": self._image(s["image"], s["valid"], np.array(row)),
            "label": torch.from_numpy(label.astype(np.int64)) if label is not None else None,
            "has_label": label is not None,
            "target": self._target(np.array(row)),
            "valid": torch.from_numpy(s["valid"]),
            "meta": s["meta"],
        }

    def __getitems__(self, items: Sequence[int]) -> dict[str, Any]:
        rows = self.indices[np.asarray(items)]
        alloc = shared_empty if get_worker_info() is not None else np.empty
        raw = self._shift is None or self._scale is None  # read straight into the batch
        b = self.store.get_batch(rows, alloc, alloc if raw else np.empty)
        label = None
        if b["label"] is not None:
            label = alloc(b["label"].shape, np.dtype(np.int64))
            np.copyto(label, b["label"])
        return {
            "image": self._image(b["image"], b["valid"], rows, alloc),
            "label": None if label is None else tensor_of(label),
            "has_label": torch.from_numpy(b["has_label"]),
            "target": self._target(rows),
            "valid": tensor_of(b["valid"]),
            "meta": b["meta"],
        }


def collate_batch(batch: Any) -> Any:
    """Collate for :class:`TileDataset`: batches from ``__getitems__`` pass through."""
    if isinstance(batch, dict):
        return batch
    from torch.utils.data import default_collate

    batch = [dict(b) for b in batch]
    metas = [b.pop("meta") for b in batch]
    labels = [b.pop("label") for b in batch]
    targets = [b.pop("target") for b in batch]
    out = default_collate(batch)
    out["meta"] = metas
    out["target"] = torch.stack(targets) if targets[0] is not None else None
    out["label"] = None
    if any(x is not None for x in labels):
        blank = torch.full(batch[0]["valid"].shape, IGNORE, dtype=torch.int64)
        out["label"] = torch.stack([x if x is not None else blank for x in labels])
    return out
