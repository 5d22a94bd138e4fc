"""Lightning DataModule over a tile store: stored splits, normalisation and augmentation by name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from tessera.models.data.augment import Augment, augmenter
from tessera.models.data.tiles import TileDataset, collate_batch
from tessera.models.data.normalisation import Normalisation
from tessera.models.run.run_config import RunConfig
from tessera.tasks.store.format import INFO_FILE, StoreInfo
from tessera.tasks.store.reader import TileStore

TileClass = Literal["none", "majority", "presence"]
SPLITS = ("train", "val", "test")


def tile_classes(
    fractions: Sequence[Any], has_label: np.ndarray, how: TileClass, threshold: float = 0.05
) -> np.ndarray:
    """One class per tile from its label fractions (-1 where unlabelled or ``how='none'``).

    ``majority``: the class covering most labelled pixels. ``presence``: the non-first class
    (the first is background/clear) with the largest share if that share ≥ ``threshold``,
    else the first class.
    """
    out = np.full(len(has_label), -1, dtype=np.int64)
    if how == "none":
        return out
    for i, (f, lab) in enumerate(zip(fractions, has_label, strict=True)):
        if not lab or f is None or len(f) == 0:
            continue
        f = np.asarray(f, dtype=np.float64)
        if how == "majority":
            out[i] = int(np.argmax(f))
        else:
            j = int(np.argmax(f[1:])) + 1 if len(f) > 1 else 0
            out[i] = j if j > 0 and f[j] >= threshold else 0
    return out


def keep_labels_per_class(
    targets: np.ndarray, rows: np.ndarray, per_class: int, seed: int
) -> np.ndarray:
    """Copy of ``targets`` with only ``per_class`` seeded labels per class left among ``rows``."""
    out = targets.copy()
    rng = np.random.default_rng(seed)
    chosen = rows[targets[rows] >= 0]
    for c in np.unique(targets[chosen]):
        members = chosen[targets[chosen] == c]
        drop = rng.permutation(members)[per_class:]
        out[drop] = -1
    return out


def oversample_labelled(ds: TileDataset, fraction: float) -> int:
    """Repeat a dataset's labelled tiles so about ``fraction`` of its samples carry a label.

    Semi-supervised batches then mix labelled and unlabelled tiles even with a few labels
    among thousands of tiles. Returns the repeat factor (1: nothing changed).
    """
    if ds.targets is None or not 0 < fraction < 1:
        return 1
    has = ds.targets[ds.indices] >= 0
    n_lab, n_unl = int(has.sum()), int((~has).sum())
    if n_lab == 0 or n_lab / len(has) >= fraction:
        return 1
    repeat = math.ceil(fraction / (1 - fraction) * n_unl / n_lab)
    extra = np.repeat(ds.indices[has], repeat - 1)
    ds.indices = np.concatenate([ds.indices, extra])
    return repeat


class TileDataModule(pl.LightningDataModule):
    """Train/val/test loaders over one channel layout of a :class:`TileStore`.

    Splits are the store's own (seeded and leakage-free at tiling time). Under DDP Lightning
    wraps each loader in a ``DistributedSampler``, so each rank reads its own shard.
    """

    def __init__(
        self,
        store: str,
        sources: Sequence[str],
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        normalisation: Normalisation = "zscore",
        augment: Augment = "dihedral",
        crop: float = 0.75,
        synth_probability: float = 0.5,
        tile_class: TileClass = "none",
        presence_threshold: float = 0.05,
        labels_per_class: int | None = None,
        labelled_fraction: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.store: TileStore | None = None
        self.datasets: dict[str, TileDataset] = {}
        # one shuffling generator for the whole fit, saved in checkpoints: a resumed run
        # shuffles its next epochs as the uninterrupted run would have
        self.shuffle_generator = torch.Generator().manual_seed(seed)
        self._augment: Any = None

    @classmethod
    def from_run(cls, config: RunConfig) -> TileDataModule:
        """The data module of a run config (its dataset, loader and seed)."""
        ds, loader = config.dataset, config.loader
        return cls(
            config.store,
            ds.sources,
            batch_size=loader.batch_size,
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
            normalisation=ds.normalisation,
            augment=ds.augment,
            crop=ds.crop,
            synth_probability=ds.synth_probability,
            tile_class=ds.tile_class,
            presence_threshold=ds.presence_threshold,
            labels_per_class=ds.labels_per_class,
            labelled_fraction=ds.labelled_fraction,
            seed=config.trainer.seed,
        )

    def state_dict(self) -> dict[str, Any]:
        """Checkpointed state: where the shuffling generator stands."""
        return {"shuffle_generator": self.shuffle_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue shuffling where the checkpointed run stopped."""
        if "shuffle_generator" in state_dict:
            self.shuffle_generator.set_state(state_dict["shuffle_generator"])

    def prepare_data(self) -> None:
        """Nothing to download or write: the store is a DVC-tracked stage output."""

    def _open(self) -> TileStore:
        if self.store is None:
            path = Path(self.hparams["store"])
            if not (path / INFO_FILE).exists():
                raise FileNotFoundError(f"{path}: no tile store (run `tessera tile` first)")
            self.store = TileStore.open(path)
        return self.store

    def setup(self, stage: str | None = None) -> None:
        store = self._open()
        hp = self.hparams
        idx = store.index
        unknown = sorted(set(hp["sources"]) - set(store.info.sources))
        if unknown:
            raise ValueError(f"{store.root}: no tiles of source(s) {unknown}")
        targets = tile_classes(
            idx["label_fractions"].tolist(),
            idx["has_label"].to_numpy(),
            hp["tile_class"],
            hp["presence_threshold"],
        )
        if hp["labels_per_class"] is not None:
            train_rows = np.flatnonzero(
                idx["source"].isin(list(hp["sources"])).to_numpy()
                & (idx["split"] == "train").to_numpy()
            )
            train_targets = keep_labels_per_class(
                targets, train_rows, hp["labels_per_class"], hp["seed"]
            )
        else:
            train_targets = targets
        for split in SPLITS:
            self.datasets[split] = TileDataset(
                store,
                hp["sources"],
                [split],
                hp["normalisation"],
                train_targets if split == "train" else targets,
            )
        if hp["labelled_fraction"]:
            oversample_labelled(self.datasets["train"], hp["labelled_fraction"])
        if len(self.datasets["train"]) == 0:
            raise ValueError(f"{store.root}: sources {list(hp['sources'])} have no training tiles")

    @property
    def store_info(self) -> StoreInfo:
        """The store's ``store.json``, as read when the store was opened."""
        return self._open().info

    @property
    def info(self) -> dict[str, Any]:
        """Channels, tile size and class names of the selected sources."""
        store = self._open()
        first = self.hparams["sources"][0]
        if first not in store.info.sources:
            known = ", ".join(sorted(store.info.sources))
            raise ValueError(f"{store.root}: no tiles of source {first!r} (the store has: {known})")
        src = store.info.sources[first]
        return {
            "in_channels": len(src.bands),
            "image_size": store.info.params.size,
            "class_names": list(src.class_names),
            "bands": list(src.bands),
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Any]:
        hp = self.hparams
        return DataLoader(
            self.datasets[split],
            batch_size=hp["batch_size"],
            shuffle=shuffle,
            num_workers=hp["num_workers"],
            pin_memory=hp["pin_memory"],
            collate_fn=collate_batch,
            generator=self.shuffle_generator if shuffle else None,
            persistent_workers=hp["num_workers"] > 0,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        split = "val" if len(self.datasets["val"]) else "train"
        return self._loader(split, shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", shuffle=False)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        meta = batch.pop("meta", None)
        moved = super().transfer_batch_to_device(batch, device, dataloader_idx)
        moved["meta"] = meta
        return moved

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is None or not self.trainer.training:
            return batch
        hp = self.hparams
        if self._augment is None:  # per rank: each draws its own transforms
            seed = int(hp["seed"]) + 7919 * int(self.trainer.global_rank)
            tile = int(batch["image"].shape[-1])
            how = {True: "dihedral", False: "none"}.get(hp["augment"], hp["augment"])
            self._augment = augmenter(how, tile, hp["crop"], hp["synth_probability"], seed)
            if self._augment is None:
                self._augment = lambda b: b
        return self._augment(batch)
