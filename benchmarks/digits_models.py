"""The digits benchmark's models and trainings: digits as tile-store samples, the M2 ssvae,
the VAEs with a clustering regulariser, and the labels-only classifier."""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch.utils.data import DataLoader, default_collate

from benchmarks.digits_references import shift_collate
from tessera.models.kinds import ClusterReg
from tessera.models.nets.vae_nets import TileClassifier
from tessera.models.trainers import SSVAEModule, VAEModule

WIDTHS = [32, 64, 128]


def samples(x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Digits as tile-store-like sample dicts (image 1×8×8 in [0, 1], valid mask, target)."""
    img = torch.from_numpy(x.reshape(-1, 1, 8, 8) / 16.0).float()
    return [
        {"image": img[i], "valid": torch.ones(8, 8, dtype=torch.bool), "target": int(y[i])}
        for i in range(len(x))
    ]


def trainer(epochs: int, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        callbacks=callbacks,
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=True,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def kmeans_scores(feats: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    pred = KMeans(10, init="k-means++", n_init=4, random_state=0).fit_predict(feats)
    return normalized_mutual_info_score(y, pred), adjusted_rand_score(y, pred)


def train_ssvae(
    labelled: list, unlabelled: list, epochs: int, args: argparse.Namespace, curve: pl.Callback
) -> SSVAEModule:
    m2 = SSVAEModule(
        in_channels=1,
        image_size=8,
        num_classes=10,
        latent_dim=args.ssvae_latent,
        widths=WIDTHS,
        rec_loss="bce",
        alpha=args.alpha,
        dropout=0.2,
        lr=1e-3,
    )
    data = unlabelled + labelled * args.repeat  # labelled tiles oversampled into every batch
    loader = DataLoader(data, batch_size=64, shuffle=True, collate_fn=collate(args))
    trainer(epochs, [curve]).fit(m2, loader)
    return m2


def collate(args: argparse.Namespace) -> Any:
    """The batches' augmentation: ±1-pixel shifts with ``--augment``, none otherwise."""
    return shift_collate if args.augment else default_collate


def train_vae(
    everything: list,
    epochs: int,
    reg: ClusterReg,
    weight: float,
    latent: int,
    warmup: int,
    curves: list[pl.Callback] | None = None,
) -> VAEModule:
    vae = VAEModule(
        in_channels=1,
        image_size=8,
        latent_dim=latent,
        widths=WIDTHS,
        rec_loss="bce",
        cluster_reg=reg if weight > 0 else "none",
        n_clusters=10,
        cluster_weight=weight,
        cluster_warmup_epochs=warmup,
    )
    trainer(epochs, curves).fit(vae, DataLoader(everything, batch_size=64, shuffle=True))
    return vae


class LabelsOnly(pl.LightningModule):
    """The M2 classifier's architecture trained with cross-entropy on labelled tiles only."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TileClassifier(1, 10, WIDTHS, dropout=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self(batch["image"]), batch["target"])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def latent_means(vae: VAEModule, x_all: torch.Tensor) -> torch.Tensor:
    vae.eval()
    with torch.no_grad():
        return vae.encode(x_all)[0]
