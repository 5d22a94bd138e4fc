"""``seg_ae``: the segmentation autoencoder trainer."""

from __future__ import annotations

import math
from typing import Any

import torch

from tessera.models.blocks import ActKind, ConvKind, NormKind
from tessera.models.losses import (
    LatentReg,
    MaskedDiceCELoss,
    RecLoss,
    latent_penalty,
    orthogonality_penalty,
    rec_channels,
    reconstruction_nll,
)
from tessera.models.nets import SegAutoEncoder
from tessera.models.trainers.base import BaseTask
from tessera.tasks.store.format import IGNORE


class SegAETask(BaseTask):
    """Segmentation autoencoder: w_rec·reconstruction + w_seg·Dice-CE + latent regularisers.

    Tiles without labels contribute the reconstruction loss only.
    """

    net: SegAutoEncoder
    _inter: torch.Tensor
    _total: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: list[int] | None = None,
        latent_channels: int = 16,
        dilations: list[int] | None = None,
        conv: ConvKind = "standard",
        conv_dilation: int = 2,
        groups: int = 1,
        norm: NormKind = "batch",
        act: ActKind = "relu",
        stn: bool = False,
        rec_loss: RecLoss = "mse",
        rec_weight: float = 1.0,
        seg_weight: float = 1.0,
        latent_reg: LatentReg = "none",
        latent_reg_weight: float = 0.0,
        ortho_weight: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()

    def configure_models(self) -> None:
        hp = self.hparams
        self.net = SegAutoEncoder(
            hp["in_channels"],
            hp["num_classes"],
            rec_channels(hp["rec_loss"], hp["in_channels"]),
            hp["widths"] or [32, 64],
            hp["latent_channels"],
            hp["dilations"] or [1, 2, 4, 8],
            hp["conv"],
            hp["norm"],
            hp["act"],
            hp["groups"],
            hp["conv_dilation"],
            hp["stn"],
        )

    def configure_losses(self) -> None:
        self.seg_loss = MaskedDiceCELoss(max(self.hparams["num_classes"], 1))

    def configure_metrics(self) -> None:
        super().configure_metrics()
        k = max(self.hparams["num_classes"], 1)
        self.register_buffer("_inter", torch.zeros(k), persistent=False)
        self.register_buffer("_total", torch.zeros(k), persistent=False)

    @property
    def compression_ratio(self) -> float:
        return self.net.compression_ratio

    @property
    def mode(self) -> str:
        return self.net.mode

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(x)

    def _losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        hp = self.hparams
        x, valid = batch["image"], batch["valid"]
        out = self(x)
        rec_sum, count = reconstruction_nll(hp["rec_loss"], out["rec"], x, valid)
        rec = rec_sum.sum() / count.sum().clamp_min(1)
        label = batch.get("label")
        seg = x.new_zeros(())
        if label is not None and hp["num_classes"] > 0:
            out["known_label"] = torch.where(valid, label, IGNORE)
            seg = self.seg_loss(out["seg"], out["known_label"])
        reg = hp["latent_reg_weight"] * latent_penalty(out["z"], hp["latent_reg"])
        if hp["ortho_weight"] > 0:
            reg = reg + hp["ortho_weight"] * orthogonality_penalty(out["z"])
        loss = hp["rec_weight"] * rec + hp["seg_weight"] * seg + reg
        return {"loss": loss, "rec": rec, "seg": seg, "reg": reg}, out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses, _ = self._losses(batch)
        self._log_all("train", losses, len(batch["image"]))
        return losses["loss"]

    def _accumulate_dice(self, seg_logits: torch.Tensor, label: torch.Tensor) -> None:
        known = label != IGNORE
        pred = seg_logits.argmax(1)
        for c in range(self._inter.numel()):
            p, t = (pred == c) & known, (label == c) & known
            self._inter[c] += (p & t).sum()
            self._total[c] += p.sum() + t.sum()

    def _dice_scores(self) -> torch.Tensor:
        inter, total = self._gather(self._inter).sum(0), self._gather(self._total).sum(0)
        self._inter.zero_()
        self._total.zero_()
        return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.nan)

    def _eval_step(self, batch: dict[str, Any], prefix: str) -> None:
        losses, out = self._losses(batch)
        self._log_all(prefix, losses, len(batch["image"]))
        if "known_label" in out:
            self._accumulate_dice(out["seg"], out["known_label"])

    def _log_epoch_metrics(self, prefix: str) -> None:
        """Per-class Dice summed over the epoch (and all ranks)."""
        if self.hparams["num_classes"] == 0:
            return
        dice = self._dice_scores()
        present = dice[~torch.isnan(dice)]
        if present.numel():
            self.log(f"{prefix}_dice", present.mean())
        for c, d in enumerate(dice.tolist()):
            if not math.isnan(d):
                self.log(f"{prefix}_dice_{c}", d)
