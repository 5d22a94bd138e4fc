"""Torch access to a tile store: batched reads and normalisation from the stored statistics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from tessera.tasks.store.format import IGNORE
from tessera.tasks.store.reader import TileStore

Normalisation = Literal["none", "zscore", "percentile"]


def normalisation_params(
    stats: dict[str, dict[str, int | float]], bands: list[str], how: Normalisation
) -> tuple[list[float], list[float]]:
    """Per band (shift, scale) of ``(x - shift) / scale``: z-score by mean and std, or the
    2nd to 98th percentile range; a zero spread divides by 1."""
    if how == "zscore":
        return (
            [float(stats[b]["mean"]) for b in bands],
            [float(stats[b]["std"] or 1.0) for b in bands],
        )
    return (
        [float(stats[b]["p2"]) for b in bands],
        [float((stats[b]["p98"] - stats[b]["p2"]) or 1.0) for b in bands],
    )


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
        self._scale = self._shift = None
        if chosen and normalisation != "none":
            self._shift, self._scale = self._norm_params(chosen[0], normalisation)

    @property
    def scale(self) -> torch.Tensor | None:
        """The per-band divisor of the normalisation, (C, 1, 1) (None: not normalised)."""
        return self._scale

    def _norm_params(self, source: str, how: Normalisation) -> tuple[torch.Tensor, torch.Tensor]:
        info = self.store.info.sources[source]
        shift, scale = normalisation_params(info.stats, info.bands, how)
        as_t = lambda v: torch.tensor(v, dtype=torch.float32).view(-1, 1, 1)  # noqa: E731
        return as_t(shift), as_t(scale)

    def __len__(self) -> int:
        return len(self.indices)

    def _image(self, image: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(image)
        if self._shift is None or self._scale is None:
            return t
        v = torch.from_numpy(valid).unsqueeze(-3)
        return torch.where(v, (t.float() - self._shift) / self._scale, 0.0)

    def _target(self, rows: np.ndarray) -> torch.Tensor | None:
        if self.targets is None:
            return None
        return torch.from_numpy(self.targets[rows].astype(np.int64))

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        s = self.store[row]
        label = s["label"]
        return {
            "image": self._image(s["image"], s["valid"]),
            "label": torch.from_numpy(label.astype(np.int64)) if label is not None else None,
            "has_label": label is not None,
            "target": self._target(np.array(row)),
            "valid": torch.from_numpy(s["valid"]),
            "meta": s["meta"],
        }

    def __getitems__(self, items: Sequence[int]) -> dict[str, Any]:
        rows = self.indices[np.asarray(items)]
        b = self.store.get_batch(rows)
        return {
            "image": self._image(b["image"], b["valid"]),
            "label": torch.from_numpy(b["label"].astype(np.int64))
            if b["label"] is not None
            else None,
            "has_label": torch.from_numpy(b["has_label"]),
            "target": self._target(rows),
            "valid": torch.from_numpy(b["valid"]),
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
