"""``ssvae``: Kingma et al.'s M2 trainer."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.data.tiles import TileDataset
from tessera.models.kinds import ActKind, ConvKind, NormKind, RecLoss, Warmup
from tessera.models.nets.vae_nets import TileClassifier
from tessera.models.scoring.baselines import (
    BaselineResults,
    TrainBudget,
    predict_tiles,
    train_labels_only,
)
from tessera.models.scoring.losses import (
    kl_normal,
    m2_labelled_loss,
    m2_unlabelled_loss,
    reconstruction_mean,
    reconstruction_nll,
)
from tessera.models.serving import ClassifierServing
from tessera.models.trainers.base import BaseModule, _KLMixin, reparameterise


class SSVAEModule(_KLMixin, BaseModule):
    """Semi-supervised M2: classifier q(y|x), encoder q(z|x,y), decoder p(x|y,z).

    Labelled tiles (``target >= 0``) pay −ELBO(x, y) + α·CE; unlabelled tiles pay
    Σ_y q(y|x)·(−ELBO(x, y)) − H(q(y|x)). −ELBO includes −log p(y) = log K.

    ``elbo_reduction="mean"`` divides −ELBO by the tile's element count in both terms. Summed
    over a 64×64 tile, −ELBO differs between classes by hundreds of nats and the unlabelled
    term then drags q(y|x) towards whichever class the decoder reconstructs best; per element,
    the classifier stays anchored to the labels.

    Args:
        in_channels: Bands of a tile (from the store).
        image_size: Tile edge in pixels (from the store).
        num_classes: Tile classes (from the store; at least 2).
        latent_dim: Size of the latent vector z.
        widths: Channels of each encoder stage (each halves the tile); the decoder
            mirrors them. None: [32, 64].
        classifier_widths: Channels of the classifier q(y|x) stages. None: the same
            as widths.
        conv: Convolution of the encoder blocks: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        rec_loss: Reconstruction likelihood: mse, l1, bce (inputs in [0, 1]) or
            gaussian_nll (the decoder also predicts a log-variance per channel).
        alpha: Weight of the classification loss on labelled tiles.
        elbo_reduction: sum: −ELBO summed over a tile's elements; mean: divided by
            their count (keeps q(y|x) anchored to the labels).
        unlabelled_weight: Weight of the unlabelled tiles' term.
        unlabelled_warmup_steps: Steps over which that weight rises linearly from 0
            (0: at once).
        beta: Weight of the KL term (β-VAE; 1 is the plain ELBO).
        warmup: KL warm-up while training: none, linear (0 to 1 over warmup_steps)
            or cyclical (Fu et al. 2019).
        warmup_steps: Optimiser steps the warm-up lasts (0: none).
        warmup_cycles: Periods of the cyclical warm-up within warmup_steps.
        free_bits: Nats per latent dimension below which KL is not penalised (Kingma
            et al. 2016; 0: off).
        dropout: Dropout before the classifier's linear layer.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
    """

    _correct: torch.Tensor
    _seen: torch.Tensor

    primary_metric = "accuracy"

    def __init__(  # noqa: PLR0913 - the params.yaml schema: one documented argument per key
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        latent_dim: int = 16,
        widths: list[int] | None = None,
        classifier_widths: list[int] | None = None,
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        rec_loss: RecLoss = "mse",
        alpha: float = 10.0,
        elbo_reduction: Literal["sum", "mean"] = "sum",
        unlabelled_weight: float = 1.0,
        unlabelled_warmup_steps: int = 0,
        beta: float = 1.0,
        warmup: Warmup = "none",
        warmup_steps: int = 0,
        warmup_cycles: int = 4,
        free_bits: float = 0.0,
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))

    def configure_models(self) -> None:
        hp = self.hparams
        if hp["num_classes"] < 2:
            raise ValueError("ssvae needs tile classes (num_classes >= 2)")
        self.classifier = self._new_classifier()
        self._configure_vae(hp["num_classes"])

    def _new_classifier(self) -> TileClassifier:
        hp = self.hparams
        widths = hp["classifier_widths"] or hp["widths"] or [32, 64]
        return TileClassifier(
            hp["in_channels"], hp["num_classes"], widths, hp["norm"], hp["act"], hp["dropout"]
        )

    def baselines(
        self, train: TileDataset, test: TileDataset, budget: TrainBudget
    ) -> BaselineResults:
        """The same classifier q(y|x) trained on the labelled tiles alone (``labels_only``)."""
        hp = self.hparams
        clf = train_labels_only(self._new_classifier, train, budget, hp["lr"], hp["weight_decay"])
        return BaselineResults(tile_predictions={"labels_only": predict_tiles(clf, test)})

    def configure_metrics(self) -> None:
        super().configure_metrics()
        self.register_buffer("_correct", torch.zeros(()), persistent=False)
        self.register_buffer("_seen", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits q(y|x)."""
        return self.classifier(x)

    @classmethod
    def needs_classes(cls, model_type: str, tile_class: str) -> bool:
        return True

    def posterior(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """q(y|x), the expected μ under it, and (μ, log σ²) at the predicted class."""
        k = self.hparams["num_classes"]
        probs = torch.softmax(self.classifier(x), 1)
        n = len(x)
        ys = torch.arange(k, device=x.device).repeat_interleave(n)
        mu, logvar = self.encoder(x.repeat(k, 1, 1, 1), F.one_hot(ys, k).to(x.dtype))
        mu, logvar = mu.view(k, n, -1), logvar.view(k, n, -1)
        pred = probs.argmax(1)
        rows = torch.arange(n, device=x.device)
        return {
            "probs": probs,
            "latent": (mu * probs.T.unsqueeze(-1)).sum(0),
            "mu": mu[pred, rows],
            "logvar": logvar[pred, rows],
            "pred": pred,
        }

    def embed(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """μ averaged over the classes under q(y|x)."""
        return self.posterior(x)["latent"]

    def evaluate_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        post = self.posterior(x)
        cond = F.one_hot(post["pred"], self.hparams["num_classes"]).to(x.dtype)
        rec = reconstruction_mean(self.hparams["rec_loss"], self.decoder(post["mu"], cond), x)
        return {
            "rec": rec,
            "class_pred": post["pred"],
            "kl": kl_normal(post["mu"], post["logvar"]),
            "mu": post["mu"],
        }

    @property
    def serving_output(self) -> str:
        return "class_probabilities"

    def serving_module(self) -> nn.Module:
        """Class probabilities of the classifier q(y|x)."""
        return ClassifierServing(self.classifier).eval()

    def class_samples(self, n: int, class_names: list[str]) -> dict[str, torch.Tensor]:
        return {name: self.sample(n, c) for c, name in enumerate(class_names)}

    def sample(self, n: int, y: int | torch.Tensor) -> torch.Tensor:
        """Draw ``n`` images of class ``y`` from p(x | y, z), z ~ N(0, I)."""
        return self._sample_prior(n, self.hparams["num_classes"], y)

    def _neg_elbo(
        self, x: torch.Tensor, valid: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(−ELBO with the KL penalty as trained, plain KL, μ, reconstruction) per sample."""
        k = self.hparams["num_classes"]
        onehot = F.one_hot(y, k).to(x.dtype)
        mu, logvar = self.encoder(x, onehot)
        z = reparameterise(mu, logvar) if self.training else mu
        rec, _ = reconstruction_nll(self.hparams["rec_loss"], self.decoder(z, onehot), x, valid)
        per_dim = kl_normal(mu, logvar)
        kl = per_dim.sum(1)
        fb = self.hparams["free_bits"]
        penalised = per_dim.clamp(min=fb).sum(1) if fb > 0 else kl
        kl_pen = self.hparams["beta"] * self._kl_annealing() * penalised
        neg_elbo = rec + kl_pen + math.log(k)
        if self.hparams["elbo_reduction"] == "mean":
            neg_elbo = neg_elbo / x[0].numel()
        return neg_elbo, kl, mu, rec

    def _losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        hp = self.hparams
        x, valid = batch["image"], batch["valid"]
        y = batch.get("target")
        if y is None:
            raise ValueError("ssvae needs tile classes (set tile_class)")
        k, n = hp["num_classes"], len(x)
        logits = self.classifier(x)
        lab = y >= 0
        total = x.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        mus = []
        if lab.any():
            neg, _, mu_l, _ = self._neg_elbo(x[lab], valid[lab], y[lab])
            labelled = m2_labelled_loss(neg, logits[lab], y[lab], hp["alpha"])
            total = total + labelled.sum()
            terms["labelled"] = labelled.mean()
            terms["ce"] = F.cross_entropy(logits[lab], y[lab])
            mus.append(mu_l)
        if (~lab).any():
            xu, vu = x[~lab], valid[~lab]
            m = len(xu)
            ys = torch.arange(k, device=x.device).repeat_interleave(m)
            neg, _, mu_u, _ = self._neg_elbo(xu.repeat(k, 1, 1, 1), vu.repeat(k, 1, 1), ys)
            per_class = neg.view(k, m).T
            unlabelled = m2_unlabelled_loss(per_class, logits[~lab])
            ramp = 1.0
            if self.training and hp["unlabelled_warmup_steps"] > 0:
                ramp = min(1.0, int(self.kl_step) / hp["unlabelled_warmup_steps"])
            total = total + hp["unlabelled_weight"] * ramp * unlabelled.sum()
            terms["unlabelled"] = unlabelled.mean()
            probs = torch.softmax(logits[~lab], 1)
            mus.append((mu_u.view(k, m, -1) * probs.T.unsqueeze(-1)).sum(0))
        terms["loss"] = total / n
        return terms, torch.cat(mus) if mus else x.new_zeros((0, hp["latent_dim"]))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms, _ = self._losses(batch)
        self.kl_step += 1
        self._log_all("train", {k: v.detach() for k, v in terms.items()}, len(batch["image"]))
        return terms["loss"]

    def _eval_step(self, batch: dict[str, Any], prefix: str) -> None:
        y = batch.get("target")
        terms, mu = self._losses(batch)
        self._log_all(prefix, terms, len(batch["image"]))
        self._val_mu.append(mu.detach())
        if y is not None and (y >= 0).any():
            pred = self.classifier(batch["image"]).argmax(1)
            self._correct += (pred[y >= 0] == y[y >= 0]).sum()
            self._seen += (y >= 0).sum()

    def _log_accuracy(self, prefix: str) -> None:
        correct, seen = self._gather(self._correct).sum(), self._gather(self._seen).sum()
        self._correct.zero_()
        self._seen.zero_()
        if seen > 0:
            self.log(f"{prefix}_accuracy", correct / seen)

    def _log_epoch_metrics(self, prefix: str) -> None:
        self._log_accuracy(prefix)
        self._latent_diagnostics(prefix)
