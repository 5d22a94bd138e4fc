"""``vae`` and ``cvae``: the VAE trainer."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.kinds import ActKind, ClusterReg, ConvKind, NormKind, RecLoss, Warmup
from tessera.models.nets.mixture import MixturePrior
from tessera.models.scoring.losses import (
    TCDiscriminator,
    dec_loss,
    dec_soft_assignment,
    discriminator_loss,
    free_bits_kl,
    kl_normal,
    reconstruction_mean,
    reconstruction_nll,
    total_correlation,
)
from tessera.models.serving import EncoderServing
from tessera.models.trainers.base import BaseModule, _KLMixin, reparameterise


class VAEModule(_KLMixin, BaseModule):
    """VAE (``vae``) or conditional VAE (``cvae``), with β, KL warm-up, free bits, a FactorVAE
    total-correlation penalty (second optimiser for the discriminator) and an optional
    clustering regulariser, seeded on μ after ``cluster_warmup_epochs``: DEC (Student-t soft
    assignment to learnable centroids seeded by k-means) or VaDE (the standard-normal prior
    replaced by a learnable Gaussian mixture seeded by a diagonal mixture fit).

    Args:
        in_channels: Bands of a tile (from the store).
        image_size: Tile edge in pixels (from the store).
        num_classes: Tile classes the cvae is conditioned on (from the store; 0 for
            a plain vae).
        model_type: vae, or cvae: encoder and decoder conditioned on the tile class.
        latent_dim: Size of the latent vector z.
        widths: Channels of each encoder stage (each halves the tile); the decoder
            mirrors them. None: [32, 64].
        conv: Convolution of the encoder blocks: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        rec_loss: Reconstruction likelihood: mse, l1, bce (inputs in [0, 1]) or
            gaussian_nll (the decoder also predicts a log-variance per channel).
        beta: Weight of the KL term (β-VAE; 1 is the plain ELBO).
        warmup: KL warm-up while training: none, linear (0 to 1 over warmup_steps)
            or cyclical (Fu et al. 2019).
        warmup_steps: Optimiser steps the warm-up lasts (0: none).
        warmup_cycles: Periods of the cyclical warm-up within warmup_steps.
        free_bits: Nats per latent dimension below which KL is not penalised (Kingma
            et al. 2016; 0: off).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        tc_weight: Weight of FactorVAE's total-correlation penalty (0: off); a
            discriminator learns it with a second optimiser.
        disc_lr: Learning rate of that discriminator.
        cluster_reg: none; dec: pull μ towards learnable centroids by Student-t
            soft assignment; vade: a mixture-of-Gaussians prior (Jiang et al. 2017).
        n_clusters: Centroids of the DEC regulariser, or components of the mixture.
        cluster_weight: Weight of the DEC loss; for vade, of the mixture prior's KL
            (1: the VaDE ELBO), which then replaces the standard-normal KL.
        cluster_warmup_epochs: Epochs of plain VAE training before the centroids or
            the mixture are seeded on μ and the regulariser starts.
    """

    dec_ready: torch.Tensor

    def __init__(  # noqa: PLR0913 - the params.yaml schema: one documented argument per key
        self,
        in_channels: int,
        image_size: int,
        num_classes: int = 0,
        model_type: Literal["vae", "cvae"] = "vae",
        latent_dim: int = 16,
        widths: list[int] | None = None,
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        rec_loss: RecLoss = "mse",
        beta: float = 1.0,
        warmup: Warmup = "none",
        warmup_steps: int = 0,
        warmup_cycles: int = 4,
        free_bits: float = 0.0,
        tc_weight: float = 0.0,
        disc_lr: float = 1e-4,
        cluster_reg: ClusterReg = "none",
        n_clusters: int = 10,
        cluster_weight: float = 0.1,
        cluster_warmup_epochs: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("dec_ready", torch.zeros((), dtype=torch.bool))

    @property
    def conditional(self) -> bool:
        return bool(self.hparams["model_type"] == "cvae")

    @classmethod
    def needs_classes(cls, model_type: str, tile_class: str) -> bool:
        return model_type == "cvae" or tile_class != "none"

    @classmethod
    def data_arguments(
        cls, model_type: str, data: dict[str, Any], with_classes: bool
    ) -> dict[str, Any]:
        return super().data_arguments(model_type, data, with_classes) | {"model_type": model_type}

    def _eval_condition(self, y: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """A ``cvae``'s condition in evaluation: the tile class, unknown (-1) as class 0."""
        if not self.conditional:
            return None
        assert y is not None
        return F.one_hot(y.clamp_min(0), self.hparams["num_classes"]).to(like.dtype)

    def embed(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The posterior mean μ."""
        return self.encode(x, self._eval_condition(y, x))[0]

    def evaluate_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        cond = self._eval_condition(batch["target"], x)
        mu, logvar = self.encode(x, cond)
        rec = reconstruction_mean(self.hparams["rec_loss"], self.decoder(mu, cond), x)
        return {"rec": rec, "kl": kl_normal(mu, logvar), "mu": mu}

    @property
    def serving_output(self) -> str:
        return "latent_mean_per_class" if self.conditional else "latent_mean"

    def serving_module(self) -> nn.Module:
        """μ; for a ``cvae``, μ under every class (N, K, D)."""
        k = self.hparams["num_classes"] if self.conditional else 0
        return EncoderServing(self.encoder, k).eval()

    def example_columns(
        self, batch: dict[str, Any]
    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        x = batch["image"]
        o = self(x, self._condition(batch))
        rec = reconstruction_mean(self.hparams["rec_loss"], o["rec"], x)
        return {"input": x, "reconstruction": rec}, ()

    def class_samples(self, n: int, class_names: list[str]) -> dict[str, torch.Tensor]:
        if not self.conditional:
            return {}
        return {name: self.sample(n, c) for c, name in enumerate(class_names)}

    def configure_models(self) -> None:
        hp = self.hparams
        if self.conditional and hp["num_classes"] < 2:
            raise ValueError("cvae needs tile classes (num_classes >= 2)")
        self._configure_vae(hp["num_classes"] if self.conditional else 0)
        self.discriminator = TCDiscriminator(hp["latent_dim"]) if hp["tc_weight"] > 0 else None
        self.centroids = (
            nn.Parameter(torch.randn(hp["n_clusters"], hp["latent_dim"]))
            if hp["cluster_reg"] == "dec"
            else None
        )
        vade = hp["cluster_reg"] == "vade"
        self.mixture = MixturePrior(hp["n_clusters"], hp["latent_dim"]) if vade else None

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        vae_params = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        opts = [torch.optim.Adam(vae_params, lr=hp["lr"], weight_decay=hp["weight_decay"])]
        if self.discriminator is not None:
            opts.append(
                torch.optim.Adam(
                    self.discriminator.parameters(), lr=hp["disc_lr"], betas=(0.5, 0.9)
                )
            )
        return opts

    def _condition(self, batch: dict[str, Any]) -> torch.Tensor | None:
        if not self.conditional:
            return None
        y = batch.get("target")
        if y is None or (y < 0).any():
            raise ValueError("cvae needs a tile class for every tile (set tile_class)")
        return F.one_hot(y, self.hparams["num_classes"]).to(batch["image"].dtype)

    def encode(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, cond)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x, cond)
        z = reparameterise(mu, logvar) if self.training else mu
        return {"rec": self.decoder(z, cond), "mu": mu, "logvar": logvar, "z": z}

    def sample(self, n: int, y: int | torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` images from the prior; a ``cvae`` generates them as class ``y``."""
        return self._sample_prior(n, self.hparams["num_classes"] if self.conditional else 0, y)

    def _losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        hp = self.hparams
        x, valid = batch["image"], batch["valid"]
        cond = self._condition(batch)
        out = self(x, cond)
        rec, _ = reconstruction_nll(hp["rec_loss"], out["rec"], x, valid)
        w = self._kl_annealing()
        if self.mixture is not None and bool(self.dec_ready):  # VaDE: KL to the mixture prior
            kl = self.mixture.kl(out["mu"], out["logvar"], out["z"])
            penalised = hp["cluster_weight"] * kl.mean()
        else:
            per_dim = kl_normal(out["mu"], out["logvar"])
            kl = per_dim.sum(1)
            free = hp["free_bits"]
            penalised = free_bits_kl(per_dim, free) if free > 0 else kl.mean()
        loss = rec.mean() + hp["beta"] * w * penalised
        terms = {"rec": rec.mean(), "kl": kl.mean(), "kl_weight": torch.tensor(w)}
        if self.discriminator is not None:
            tc = total_correlation(self.discriminator, out["z"])
            loss = loss + hp["tc_weight"] * tc
            terms["tc"] = tc
        if self.centroids is not None and bool(self.dec_ready):
            dec = dec_loss(dec_soft_assignment(out["mu"], self.centroids))
            loss = loss + hp["cluster_weight"] * dec
            terms["cluster"] = dec
        terms["loss"] = loss
        terms["elbo"] = -(rec + kl).mean()
        return terms, out

    @property
    def unused_parameters_at_start(self) -> bool:
        """The DEC centroids and the VaDE mixture take no gradient until they are seeded."""
        return self.centroids is not None or self.mixture is not None

    def on_train_epoch_start(self) -> None:
        """After ``cluster_warmup_epochs``, seed the DEC centroids (k-means) or the VaDE mixture
        on μ of the training tiles (rank 0's, broadcast)."""
        hp = self.hparams
        if (self.centroids is None and self.mixture is None) or bool(self.dec_ready):
            return
        if self.current_epoch < hp["cluster_warmup_epochs"]:
            return
        from sklearn.cluster import KMeans

        was_training = self.training
        self.eval()
        mus, variances = [], []
        with torch.no_grad():
            for batch in self.trainer.train_dataloader or []:
                x = batch["image"].to(self.device)
                mu, logvar = self.encode(x, self._condition({**batch, "image": x}))
                mus.append(mu.cpu())
                variances.append(logvar.exp().cpu())
        self.train(was_training)
        mu_all = torch.cat(mus).numpy()
        if self.mixture is not None:
            self.mixture.seed(mu_all, torch.cat(variances).numpy())
            seeded = list(self.mixture.parameters())
        else:
            assert self.centroids is not None
            km = KMeans(hp["n_clusters"], n_init=4, random_state=0).fit(mu_all)
            with torch.no_grad():
                self.centroids.copy_(torch.as_tensor(km.cluster_centers_))
            seeded = [self.centroids]
        with torch.no_grad():  # every rank starts from rank 0's seeding
            for p in seeded:
                p.copy_(self.trainer.strategy.broadcast(p.detach().clone(), src=0))
        self.dec_ready.fill_(True)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opts = self.optimizers()
        opt_vae = opts[0] if isinstance(opts, list) else opts
        terms, out = self._losses(batch)
        opt_vae.zero_grad()
        self.manual_backward(terms["loss"])
        if self.gradient_clip_val is not None:
            self.clip_gradients(opt_vae.optimizer, self.gradient_clip_val, "norm")
        opt_vae.step()
        if self.discriminator is not None and isinstance(opts, list):
            d_loss = discriminator_loss(self.discriminator, out["z"], out["z"])
            opts[1].zero_grad()
            self.manual_backward(d_loss)
            opts[1].step()
            terms["disc"] = d_loss.detach()
        self.kl_step += 1
        self._log_all("train", {k: v.detach() for k, v in terms.items()}, len(batch["image"]))

    def _eval_step(self, batch: dict[str, Any], prefix: str) -> None:
        terms, out = self._losses(batch)
        self._log_all(prefix, terms, len(batch["image"]))
        self._val_mu.append(out["mu"].detach())

    def _log_epoch_metrics(self, prefix: str) -> None:
        self._latent_diagnostics(prefix)
