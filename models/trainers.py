"""LightningModules in torchgeo's trainer style: hyper-parameters, then models, losses, metrics.

``seg_ae`` is :class:`SegAETask`; ``vae`` and ``cvae`` are :class:`VAETask`; ``ssvae`` is
:class:`SSVAETask` (Kingma et al. 2014, M2). Constructor arguments are flat, with ``Literal``
choices, so ``params.yaml`` validates against the signatures.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import ActKind, ConvKind, NormKind
from models.diagnostics import active_units, collapse_message
from models.losses import (
    LatentReg,
    MaskedDiceCELoss,
    RecLoss,
    TCDiscriminator,
    Warmup,
    dec_loss,
    dec_soft_assignment,
    discriminator_loss,
    free_bits_kl,
    kl_normal,
    kl_weight,
    latent_penalty,
    m2_labelled_loss,
    m2_unlabelled_loss,
    orthogonality_penalty,
    rec_channels,
    reconstruction_mean,
    reconstruction_nll,
    total_correlation,
)
from models.nets import GaussianDecoder, GaussianEncoder, SegAutoEncoder, TileClassifier

ClusterReg = Literal["none", "dec"]


class BaseTask(pl.LightningModule):
    """Template: ``save_hyperparameters`` → ``configure_models/losses/metrics``; Adam optimiser."""

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
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

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )

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
            label = torch.where(valid, label, 255)
            seg = self.seg_loss(out["seg"], label)
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
        known = label != 255
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
        if batch.get("label") is not None and self.hparams["num_classes"] > 0:
            self._accumulate_dice(out["seg"], torch.where(batch["valid"], batch["label"], 255))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_dice(self, prefix: str) -> None:
        if self.hparams["num_classes"] == 0:
            return
        dice = self._dice_scores()
        present = dice[~torch.isnan(dice)]
        if present.numel():
            self.log(f"{prefix}_dice", present.mean())
        for c, d in enumerate(dice.tolist()):
            if not math.isnan(d):
                self.log(f"{prefix}_dice_{c}", d)

    def on_validation_epoch_end(self) -> None:
        self._log_dice("val")

    def on_test_epoch_end(self) -> None:
        self._log_dice("test")


class _KLMixin:
    """Shared β-weighted, annealed, free-bits KL term."""

    hparams: Any
    kl_step: torch.Tensor
    training: bool

    def _kl_terms(
        self, mu: torch.Tensor, logvar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(weighted KL for the loss, per-sample KL, the annealing factor)."""
        hp = self.hparams
        per_dim = kl_normal(mu, logvar)
        kl = per_dim.sum(1)
        w = 1.0  # evaluation reports the true ELBO
        if self.training:
            w = kl_weight(int(self.kl_step), hp["warmup"], hp["warmup_steps"], hp["warmup_cycles"])
        penalised = free_bits_kl(per_dim, hp["free_bits"]) if hp["free_bits"] > 0 else kl.mean()
        return hp["beta"] * w * penalised, kl, w


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class VAETask(_KLMixin, BaseTask):
    """VAE (``vae``) or conditional VAE (``cvae``), with β, KL warm-up, free bits, a FactorVAE
    total-correlation penalty (second optimiser for the discriminator) and an optional DEC
    clustering regulariser on μ (Student-t soft assignment to learnable centroids, seeded by
    k-means on μ after ``cluster_warmup_epochs``).
    """

    dec_ready: torch.Tensor

    def __init__(
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

    def configure_models(self) -> None:
        hp = self.hparams
        if self.conditional and hp["num_classes"] < 2:
            raise ValueError("cvae needs tile classes (num_classes >= 2)")
        cond = hp["num_classes"] if self.conditional else 0
        widths = hp["widths"] or [32, 64]
        self.encoder = GaussianEncoder(
            hp["in_channels"],
            hp["image_size"],
            hp["latent_dim"],
            widths,
            cond,
            hp["conv"],
            hp["norm"],
            hp["act"],
        )
        self.decoder = GaussianDecoder(
            rec_channels(hp["rec_loss"], hp["in_channels"]),
            hp["image_size"],
            hp["latent_dim"],
            widths,
            cond,
            hp["norm"],
            hp["act"],
        )
        self.discriminator = TCDiscriminator(hp["latent_dim"]) if hp["tc_weight"] > 0 else None
        self.centroids = (
            nn.Parameter(torch.randn(hp["n_clusters"], hp["latent_dim"]))
            if hp["cluster_reg"] == "dec"
            else None
        )

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

    @torch.no_grad()
    def sample(self, n: int, y: int | torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` images from the prior; a ``cvae`` generates them as class ``y``."""
        z = torch.randn(n, self.hparams["latent_dim"], device=self.device)
        cond = None
        if self.conditional:
            if y is None:
                raise ValueError("cvae.sample needs a class y")
            yt = torch.as_tensor(y, device=self.device).long().expand(n)
            cond = F.one_hot(yt, self.hparams["num_classes"]).float()
        out = self.decoder(z, cond)
        c = self.hparams["in_channels"]
        return reconstruction_mean(self.hparams["rec_loss"], out, out[:, :c])

    def _losses(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        hp = self.hparams
        x, valid = batch["image"], batch["valid"]
        cond = self._condition(batch)
        out = self(x, cond)
        rec, _ = reconstruction_nll(hp["rec_loss"], out["rec"], x, valid)
        kl_loss, kl, w = self._kl_terms(out["mu"], out["logvar"])
        loss = rec.mean() + kl_loss
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

    def on_train_epoch_start(self) -> None:
        """DEC: after ``cluster_warmup_epochs``, seed the centroids by k-means on μ (rank 0's)."""
        hp = self.hparams
        if self.centroids is None or bool(self.dec_ready):
            return
        if self.current_epoch < hp["cluster_warmup_epochs"]:
            return
        from sklearn.cluster import KMeans

        was_training = self.training
        self.eval()
        mus = []
        with torch.no_grad():
            for batch in self.trainer.train_dataloader or []:
                x = batch["image"].to(self.device)
                mus.append(self.encode(x, self._condition({**batch, "image": x}))[0].cpu())
        self.train(was_training)
        km = KMeans(hp["n_clusters"], n_init=4, random_state=0).fit(torch.cat(mus).numpy())
        centres = torch.as_tensor(km.cluster_centers_, dtype=self.centroids.dtype)
        centres = self.trainer.strategy.broadcast(centres.to(self.device), src=0)
        with torch.no_grad():
            self.centroids.copy_(centres)
        self.dec_ready.fill_(True)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opts = self.optimizers()
        opt_vae = opts[0] if isinstance(opts, list) else opts
        terms, out = self._losses(batch)
        opt_vae.zero_grad()
        self.manual_backward(terms["loss"])
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

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._latent_diagnostics("val")

    def on_test_epoch_end(self) -> None:
        self._latent_diagnostics("test")


class SSVAETask(_KLMixin, BaseTask):
    """Semi-supervised M2: classifier q(y|x), encoder q(z|x,y), decoder p(x|y,z).

    Labelled tiles (``target >= 0``) pay −ELBO(x, y) + α·CE; unlabelled tiles pay
    Σ_y q(y|x)·(−ELBO(x, y)) − H(q(y|x)). −ELBO includes −log p(y) = log K.

    ``elbo_reduction="mean"`` divides −ELBO by the tile's element count in both terms. Summed
    over a 64×64 tile, −ELBO differs between classes by hundreds of nats and the unlabelled
    term then drags q(y|x) towards whichever class the decoder reconstructs best; per element,
    the classifier stays anchored to the labels.
    """

    _correct: torch.Tensor
    _seen: torch.Tensor

    def __init__(
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
        widths = hp["widths"] or [32, 64]
        k = hp["num_classes"]
        self.classifier = TileClassifier(
            hp["in_channels"],
            k,
            hp["classifier_widths"] or widths,
            hp["norm"],
            hp["act"],
            hp["dropout"],
        )
        self.encoder = GaussianEncoder(
            hp["in_channels"],
            hp["image_size"],
            hp["latent_dim"],
            widths,
            k,
            hp["conv"],
            hp["norm"],
            hp["act"],
        )
        self.decoder = GaussianDecoder(
            rec_channels(hp["rec_loss"], hp["in_channels"]),
            hp["image_size"],
            hp["latent_dim"],
            widths,
            k,
            hp["norm"],
            hp["act"],
        )

    def configure_metrics(self) -> None:
        super().configure_metrics()
        self.register_buffer("_correct", torch.zeros(()), persistent=False)
        self.register_buffer("_seen", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits q(y|x)."""
        return self.classifier(x)

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
        _, kl, w = self._kl_terms(mu, logvar)
        kl_pen = (
            self.hparams["beta"]
            * w
            * (
                per_dim.clamp(min=self.hparams["free_bits"]).sum(1)
                if self.hparams["free_bits"] > 0
                else kl
            )
        )
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

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_accuracy("val")
        self._latent_diagnostics("val")

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test")
        self._latent_diagnostics("test")


MODEL_TASKS: dict[str, type[BaseTask]] = {
    "seg_ae": SegAETask,
    "vae": VAETask,
    "cvae": VAETask,
    "ssvae": SSVAETask,
}
