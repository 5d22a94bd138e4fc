"""``seg_ae``: the segmentation autoencoder trainer."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from tessera.models.data.tiles import TileDataset
from tessera.models.kinds import ActKind, ConvKind, LatentReg, LrSchedule, NormKind, RecLoss, Skips
from tessera.models.nets.seg_nets import SegAutoEncoder
from tessera.models.scoring.baselines import BaselineResults, TrainBudget, fitted_forest_scores
from tessera.models.scoring.image_metrics import SegmentationScores
from tessera.models.scoring.losses import (
    MaskedDiceCELoss,
    latent_penalty,
    orthogonality_penalty,
    rec_channels,
    reconstruction_mean,
    reconstruction_nll,
)
from tessera.models.serving import ReconstructionServing, SegServing
from tessera.models.trainers.base import BaseModule
from tessera.tasks.store.format import IGNORE


class SegAEModule(BaseModule):
    """Segmentation autoencoder: w_rec·reconstruction + w_seg·Dice-CE + latent regularisers.

    Tiles without labels contribute the reconstruction loss only.

    Args:
        in_channels: Bands of a tile (from the store).
        num_classes: Label classes of the segmentation head (from the store; 0: a
            plain autoencoder).
        widths: Channels of each encoder stage (each halves the tile); the decoder
            mirrors them. None: [32, 64].
        latent_channels: Channels of the bottleneck (the latent map clustered in
            evaluation).
        dilations: Dilations of the context module's 3×3 convolutions at the
            bottleneck, one after the other (Yu & Koltun). None: [1, 2, 4, 8].
        conv: Convolution of the encoder blocks: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        conv_dilation: Dilation of the dilated convolution kind.
        groups: Groups of the group convolution kind.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        stn: Put a spatial transformer in front of the encoder.
        skips: U-Net skip connections: none; seg (the segmentation head gets its own
            decoder with them, the reconstruction still passes the bottleneck alone, so
            the latent stays meaningful for clustering); all (both heads).
        dropout: Spatial dropout on the bottleneck's context features (0: none).
        pixel_path: Width of a per-pixel path: two 1×1 layers on the input at full
            resolution, joined to the segmentation head beside the context (0: none).
        rec_loss: Reconstruction likelihood: mse, l1, bce (inputs in [0, 1]) or
            gaussian_nll (the decoder also predicts a log-variance per channel).
        rec_weight: Weight of the reconstruction loss.
        seg_weight: Weight of the Dice + cross-entropy loss on labelled tiles.
        focal_gamma: Focal exponent of the cross-entropy part (0: plain cross-entropy;
            2 is Lin et al.'s choice for imbalanced classes).
        latent_reg: Penalty on the bottleneck: none, l1 (sparse) or l2.
        latent_reg_weight: Weight of that penalty.
        ortho_weight: Weight of the penalty on correlated latent channels (0: off).
        lr: Adam learning rate (the peak, under a schedule).
        weight_decay: Adam weight decay.
        lr_schedule: Learning rate over training, per optimiser step: constant, cosine
            (annealed to 0) or one_cycle (Smith's warm-up then annealing).
    """

    net: SegAutoEncoder
    primary_metric = "dice_mean"

    def __init__(  # noqa: PLR0913 - the params.yaml schema: one documented argument per key
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
        skips: Skips = "none",
        dropout: float = 0.0,
        pixel_path: int = 0,
        rec_loss: RecLoss = "mse",
        rec_weight: float = 1.0,
        seg_weight: float = 1.0,
        focal_gamma: float = 0.0,
        latent_reg: LatentReg = "none",
        latent_reg_weight: float = 0.0,
        ortho_weight: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: LrSchedule = "constant",
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
            hp["skips"],
            hp["dropout"],
            hp["pixel_path"],
        )

    def configure_losses(self) -> None:
        hp = self.hparams
        self.seg_loss = MaskedDiceCELoss(max(hp["num_classes"], 1), focal_gamma=hp["focal_gamma"])

    def configure_metrics(self) -> None:
        super().configure_metrics()
        self.seg_scores = SegmentationScores(max(self.hparams["num_classes"], 1))

    @classmethod
    def data_arguments(
        cls, model_type: str, data: dict[str, Any], with_classes: bool
    ) -> dict[str, Any]:
        return {"in_channels": data["in_channels"], "num_classes": len(data["class_names"])}

    @property
    def segmentation_classes(self) -> int:
        return int(self.hparams["num_classes"])

    def embed(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The bottleneck, pooled over the tile."""
        return self.net.encode(x).mean(dim=(2, 3))

    def evaluate_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        o = self(x)
        out = {"rec": reconstruction_mean(self.hparams["rec_loss"], o["rec"], x)}
        if self.segmentation_classes and batch["label"] is not None:
            out["pred_map"] = o["seg"].argmax(1)
        return out

    def baselines(
        self, train: TileDataset, test: TileDataset, budget: TrainBudget
    ) -> BaselineResults:
        """A per-pixel random forest on band values (``rf_dice_mean``, …)."""
        k = self.hparams["num_classes"]
        if k == 0:
            return BaselineResults()
        scores, forest = fitted_forest_scores(train, test, k, budget.seed)
        return BaselineResults(
            scores={f"rf_{name}": v for name, v in scores.items()}, pixel_classifier=forest
        )

    @property
    def serving_output(self) -> str:
        return "class_logits" if self.hparams["num_classes"] > 0 else "reconstruction"

    def serving_module(self) -> nn.Module:
        """Class logits per pixel (the reconstruction for a model without classes)."""
        return SegServing(self.net, self.hparams["num_classes"]).eval()

    def reconstruction_module(self) -> nn.Module:
        """The expected reconstruction per pixel, whatever the likelihood."""
        return ReconstructionServing(self.net, self.hparams["rec_loss"]).eval()

    def example_columns(
        self, batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        x = batch["image"]
        o = self(x)
        cols = {
            "input": x,
            "reconstruction": reconstruction_mean(self.hparams["rec_loss"], o["rec"], x),
        }
        if batch["label"] is None:
            return cols, ()
        return cols | {"label": batch["label"], "prediction": o["seg"].argmax(1)}, (
            "label",
            "prediction",
        )

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

    def _eval_step(self, batch: dict[str, Any], prefix: str) -> None:
        losses, out = self._losses(batch)
        self._log_all(prefix, losses, len(batch["image"]))
        if "known_label" in out:
            self.seg_scores.update(out["seg"].argmax(1), out["known_label"])

    def _log_epoch_metrics(self, prefix: str) -> None:
        """Per-class Dice summed over the epoch (and all ranks)."""
        if self.hparams["num_classes"] == 0:
            return
        with warnings.catch_warnings():  # a rank without labelled tiles still joins the sync
            warnings.filterwarnings("ignore", message=".*compute.*before.*update.*")
            dice = self.seg_scores.compute()[0]
        self.seg_scores.reset()
        present = dice[~torch.isnan(dice)]
        if present.numel():
            self.log(f"{prefix}_dice", present.mean())
        for c, d in enumerate(dice.tolist()):
            if not math.isnan(d):
                self.log(f"{prefix}_dice_{c}", d)
