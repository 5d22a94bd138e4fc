"""The trainer template, and what the VAE-family trainers share.

Everything that differs between model types lives on the trainer classes: the data arguments
a model needs, its embedding for clustering, its evaluation outputs, its serving module and
``predict_step``, its default gate metric and its example plots. Code outside
``models/trainers/`` asks the class and never switches on the model type.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.data.tiles import TileDataset
from tessera.models.nets.vae_nets import GaussianDecoder, GaussianEncoder
from tessera.models.scoring.baselines import BaselineResults, TrainBudget
from tessera.models.scoring.diagnostics import active_units, collapse_message
from tessera.models.scoring.losses import kl_weight, rec_channels, reconstruction_mean


class BaseModule(pl.LightningModule):
    """Template: ``save_hyperparameters`` → ``configure_models/losses/metrics``; Adam optimiser."""

    primary_metric: ClassVar[str] = "silhouette"
    """The evaluation metric the registry gate compares by default (higher is better)."""

    @classmethod
    def needs_classes(cls, model_type: str, tile_class: str) -> bool:
        """Whether this model needs the store's label classes (given its type and whether
        tiles get a class, ``tile_class``)."""
        return tile_class != "none"

    @classmethod
    def data_arguments(
        cls, model_type: str, data: dict[str, Any], with_classes: bool
    ) -> dict[str, Any]:
        """The constructor arguments that come from the data, not from ``params.yaml``:
        ``data`` holds ``in_channels``, ``image_size`` and ``class_names``."""
        raise NotImplementedError

    @property
    def segmentation_classes(self) -> int:
        """Classes of a per-pixel segmentation head (0: none)."""
        return 0

    # the trainer's gradient-norm bound, for a module that steps its own optimisers (Lightning
    # clips only under automatic optimisation); set by tessera.models.run.fit
    gradient_clip_val: float | None = None

    @property
    def unused_parameters_at_start(self) -> bool:
        """Whether some parameters take no gradient in the first steps (DDP must look for them)."""
        return False

    def embed(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """One latent vector per tile, for clustering (``y``: tile classes, -1 unknown)."""
        raise NotImplementedError

    def evaluate_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A batch's reconstruction mean (``rec``) and, per model, ``pred_map`` (a class map),
        ``class_pred`` (a class per tile), ``kl`` and ``mu`` (the posterior)."""
        raise NotImplementedError

    def serving_module(self) -> nn.Module:
        """The module registered for serving (tiles in, the model's answer out), in eval mode."""
        raise NotImplementedError

    @property
    def serving_output(self) -> str:
        """What :meth:`serving_module` returns, as ``tessera_model.json`` records it."""
        raise NotImplementedError

    def reconstruction_module(self) -> nn.Module | None:
        """Tiles in, their per-pixel reconstruction out (normalised units), in eval mode; None
        for a model that reconstructs no pixels (``tessera predict --reconstruction``)."""
        return None

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> torch.Tensor:
        """The serving module's answer for a batch of normalised tiles."""
        return self.serving_module()(batch["image"])

    def example_columns(
        self, batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        """Columns of the example figure (``input``, ``reconstruction``, …) and which of them
        are class maps."""
        return {"input": batch["image"]}, ()

    def class_samples(self, n: int, class_names: list[str]) -> dict[str, torch.Tensor]:
        """``n`` generated images per class (class-conditional models only)."""
        return {}

    def baselines(
        self, train: TileDataset, test: TileDataset, budget: TrainBudget
    ) -> BaselineResults:
        """What a user would train instead of this model, fitted on ``train`` and applied to
        ``test`` (none by default; k-means on raw pixels is judged for every model)."""
        return BaselineResults()

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.checkpoint_extras: dict[str, str] = {}
        """What a checkpoint carries beside the weights and hyper-parameters (the model type
        and descriptor; see :mod:`tessera.models.checkpoint`); set by the training."""
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        raise NotImplementedError

    def configure_losses(self) -> None:
        """Build loss modules (none by default: the losses are functions)."""

    def configure_metrics(self) -> None:
        """Reset the accumulators used for epoch-level metrics."""
        self._val_mu: list[torch.Tensor] = []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(self.checkpoint_extras)

    def configure_optimizers(self) -> Any:
        """Adam, with the model's ``lr_schedule`` (constant when it has none) stepped per
        optimiser step over the whole planned training."""
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        schedule = hp.get("lr_schedule", "constant")
        if schedule == "constant":
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if schedule == "cosine":
            sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _log_all(self, prefix: str, values: dict[str, torch.Tensor], batch_size: int) -> None:
        for k, v in values.items():
            self.log(
                f"{prefix}_{k}",
                v,
                on_step=False,
                on_epoch=True,
                batch_size=batch_size,
                sync_dist=True,
                prog_bar=k == "loss",
            )

    def _eval_step(self, batch: dict[str, Any], prefix: str) -> None:
        raise NotImplementedError

    def _log_epoch_metrics(self, prefix: str) -> None:
        """Metrics accumulated over an evaluation epoch (none by default)."""

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` from every rank stacked on a new first axis (just ``t[None]`` on one process)."""
        if self.trainer.world_size == 1:
            return t.unsqueeze(0)
        gathered = self.all_gather(t)
        assert isinstance(gathered, torch.Tensor)
        return gathered

    def _latent_diagnostics(self, prefix: str) -> None:
        """Active units over the epoch's posterior means; warns on posterior collapse."""
        if not self._val_mu:
            return
        mu = torch.cat(self._val_mu)
        self._val_mu = []
        mu = self._gather(mu).flatten(0, 1)
        au = int(active_units(mu).sum())
        self.log(f"{prefix}_active_units", float(au))
        msg = collapse_message(au, mu.shape[1])
        if msg and self.trainer.is_global_zero and not self.trainer.sanity_checking:
            warnings.warn(msg, stacklevel=1)


class _KLMixin:
    """What the VAEs share: the Gaussian encoder/decoder and the KL warm-up factor."""

    hparams: Any
    kl_step: torch.Tensor
    training: bool
    encoder: GaussianEncoder
    decoder: GaussianDecoder

    @classmethod
    def data_arguments(
        cls, model_type: str, data: dict[str, Any], with_classes: bool
    ) -> dict[str, Any]:
        """Channels, tile size and (when used) the number of classes."""
        return {
            "in_channels": data["in_channels"],
            "image_size": data["image_size"],
            "num_classes": len(data["class_names"]) if with_classes else 0,
        }

    def _kl_annealing(self) -> float:
        """The warm-up factor on KL while training; 1 in evaluation, which reports the ELBO."""
        hp = self.hparams
        if not self.training:
            return 1.0
        return kl_weight(int(self.kl_step), hp["warmup"], hp["warmup_steps"], hp["warmup_cycles"])

    def _configure_vae(self, cond: int) -> list[int]:
        """The Gaussian encoder and decoder (conditioned on ``cond`` classes); returns widths."""
        hp = self.hparams
        widths: list[int] = hp["widths"] or [32, 64]
        self.encoder = GaussianEncoder(
            hp["in_channels"], hp["image_size"], hp["latent_dim"], widths, cond,
            hp["conv"], hp["norm"], hp["act"],
        )  # fmt: skip
        self.decoder = GaussianDecoder(
            rec_channels(hp["rec_loss"], hp["in_channels"]), hp["image_size"],
            hp["latent_dim"], widths, cond, hp["norm"], hp["act"],
        )  # fmt: skip
        return widths

    @torch.no_grad()
    def _sample_prior(self, n: int, num_classes: int, y: int | torch.Tensor | None) -> torch.Tensor:
        """``n`` decoder means from z ~ N(0, I), conditioned on class ``y`` when ``num_classes``."""
        hp = self.hparams
        device = next(self.decoder.parameters()).device
        z = torch.randn(n, hp["latent_dim"], device=device)
        cond = None
        if num_classes:
            if y is None:
                raise ValueError("a conditional model needs a class y to sample")
            yt = torch.as_tensor(y, device=device).long().expand(n)
            cond = F.one_hot(yt, num_classes).float()
        out = self.decoder(z, cond)
        c = hp["in_channels"]
        return reconstruction_mean(hp["rec_loss"], out, out[:, :c])


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
