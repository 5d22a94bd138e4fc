"""Losses and schedules for the autoencoders and VAEs: plain tensor functions, unit-testable."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.kinds import LatentReg, RecLoss, Warmup
from tessera.tasks.store.format import IGNORE


def rec_channels(kind: RecLoss, channels: int) -> int:
    """Output channels a decoder needs for ``kind``: the mean, plus log σ² for Gaussian NLL."""
    return 2 * channels if kind == "gaussian_nll" else channels


def reconstruction_mean(kind: RecLoss, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reconstruction's expected value (sigmoid for ``bce`` logits, mean for Gaussian NLL)."""
    if kind == "bce":
        return torch.sigmoid(out)
    if kind == "gaussian_nll":
        return out[:, : x.shape[1]]
    return out


def reconstruction_nll(
    kind: RecLoss, out: torch.Tensor, x: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample reconstruction loss summed over valid elements, and the per-sample count.

    ``bce`` treats ``out`` as logits and needs targets in [0, 1] (they are clamped);
    ``gaussian_nll`` reads ``out`` as mean and log σ² stacked on the channel axis.
    """
    match kind:
        case "mse":
            elem = (out - x) ** 2
        case "l1":
            elem = (out - x).abs()
        case "bce":
            elem = F.binary_cross_entropy_with_logits(out, x.clamp(0, 1), reduction="none")
        case "gaussian_nll":
            c = x.shape[1]
            mean, logvar = out[:, :c], out[:, c:].clamp(-10, 10)
            elem = 0.5 * (logvar + (x - mean) ** 2 * torch.exp(-logvar) + math.log(2 * math.pi))
    if valid is None:
        count = torch.full((x.shape[0],), x[0].numel(), dtype=elem.dtype, device=x.device)
        return elem.flatten(1).sum(1), count
    m = valid.unsqueeze(1).to(elem.dtype).expand_as(elem)
    return (elem * m).flatten(1).sum(1), m.flatten(1).sum(1)


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample and dimension, in closed form: shape (B, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Σ_d max(λ, E_batch KL_d): dimensions below λ nats are not pushed further (Kingma 2016)."""
    return torch.clamp(kl_per_dim.mean(0), min=free_bits).sum()


def kl_weight(
    step: int, warmup: Warmup, warmup_steps: int, cycles: int = 4, ratio: float = 0.5
) -> float:
    """KL annealing factor in [0, 1] at ``step``.

    ``linear`` rises from 0 to 1 over ``warmup_steps``. ``cyclical`` (Fu et al. 2019) splits
    ``warmup_steps`` into ``cycles`` periods, each rising linearly over its first ``ratio`` and
    held at 1 for the rest; after ``warmup_steps`` the factor stays 1.
    """
    if warmup == "none" or warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    if warmup == "linear":
        return step / warmup_steps
    period = warmup_steps / cycles
    tau = (step % period) / period
    return min(1.0, tau / ratio)


def latent_penalty(z: torch.Tensor, kind: LatentReg) -> torch.Tensor:
    """Mean |z| (sparse) or mean z² of a latent tensor; zero for ``none``."""
    match kind:
        case "l1":
            return z.abs().mean()
        case "l2":
            return z.pow(2).mean()
    return z.new_zeros(())


def orthogonality_penalty(z: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal covariance of the latent channels (axis 1) over all other axes."""
    c = z.shape[1]
    flat = z.transpose(0, 1).reshape(c, -1)
    flat = flat - flat.mean(1, keepdim=True)
    cov = flat @ flat.T / max(flat.shape[1] - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return off.pow(2).sum() / max(c * (c - 1), 1)


DICE_SMOOTH = 1e-5  # MONAI's smooth_nr and smooth_dr


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """MONAI's ``DiceLoss(include_background=True, batch=True)`` on probabilities: one Dice per
    class over the batch and all pixels, 1 - mean. The same operations in the same order, so the
    value and gradients are bit-identical (``tests/models/test_losses.py`` checks against MONAI);
    written here because importing MONAI loads all its submodules (~0.9 s per training rank)."""
    axes = [0, *range(2, probs.ndim)]
    tp = torch.sum(probs * onehot, dim=axes)
    fp = (torch.sum(probs, dim=axes) - tp) * 0.5
    fn = (torch.sum(onehot, dim=axes) - tp) * 0.5
    return torch.mean(1 - (2 * tp + DICE_SMOOTH) / (2 * (tp + fp + fn) + DICE_SMOOTH))


class MaskedDiceCELoss(nn.Module):
    """Dice (as MONAI's) + cross-entropy, with pixels of label ``ignore_index`` left out of both.

    ``monai.losses.DiceCELoss`` has no ignore index, and the store marks unknown pixels (and
    unlabelled tiles) with 255, so the Dice part masks probabilities and one-hot targets.
    """

    def __init__(
        self, num_classes: int, ignore_index: int = IGNORE, focal_gamma: float = 0.0
    ) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.focal_gamma = focal_gamma

    def _cross_entropy(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over known pixels; with ``focal_gamma`` > 0 the focal loss (Lin et al.
        2017): each pixel's term scaled by (1 - p_true)^γ, so easy pixels count less."""
        if self.focal_gamma == 0:
            return F.cross_entropy(logits, label, ignore_index=self.ignore_index)
        per_px = F.cross_entropy(logits, label, ignore_index=self.ignore_index, reduction="none")
        known = label != self.ignore_index
        scale = (1 - torch.exp(-per_px)).pow(self.focal_gamma)
        return (scale * per_px)[known].mean()

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        known = label != self.ignore_index
        if not known.any():
            return logits.sum() * 0.0
        ce = self._cross_entropy(logits, label.long())
        target = torch.where(known, label.long(), 0)
        onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).to(logits.dtype)
        m = known.unsqueeze(1).to(logits.dtype)
        probs = torch.softmax(logits, dim=1) * m
        return ce + soft_dice_loss(probs, onehot * m)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Shuffle each latent dimension independently across the batch: samples of Π_d q(z_d)."""
    b, d = z.shape
    idx = torch.argsort(torch.rand(b, d, device=z.device), dim=0)
    return torch.gather(z, 0, idx)


class TCDiscriminator(nn.Module):
    """FactorVAE's discriminator: logits for (joint q(z), product of marginals Π_d q(z_d))."""

    def __init__(self, latent_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def total_correlation(disc: TCDiscriminator, z: torch.Tensor) -> torch.Tensor:
    """The density-ratio estimate of TC(z): E[log D_joint(z) − log D_marginals(z)]."""
    logits = disc(z)
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(
    disc: TCDiscriminator, z: torch.Tensor, z_other: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of telling ``z`` (class 0) from permuted ``z_other`` (class 1)."""
    joint = disc(z.detach())
    marg = disc(permute_dims(z_other.detach()))
    zeros = torch.zeros(len(joint), dtype=torch.long, device=z.device)
    ones = torch.ones(len(marg), dtype=torch.long, device=z.device)
    return 0.5 * (F.cross_entropy(joint, zeros) + F.cross_entropy(marg, ones))


def dec_soft_assignment(
    z: torch.Tensor, centroids: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """DEC's Student-t similarity q_ik of each latent to each centroid (rows sum to 1)."""
    d2 = torch.cdist(z, centroids).pow(2)
    q = (1.0 + d2 / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(1, keepdim=True)


def dec_loss(q: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) with DEC's sharpened target P ∝ q²/f_k (held fixed), per sample."""
    with torch.no_grad():
        p = q.pow(2) / q.sum(0, keepdim=True)
        p = p / p.sum(1, keepdim=True)
    return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(1).mean()


def m2_labelled_loss(
    neg_elbo: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Kingma et al. (2014) M2 labelled term per sample: −ELBO(x, y) + α·CE(q(y|x), y)."""
    return neg_elbo + alpha * F.cross_entropy(logits, y, reduction="none")


def m2_unlabelled_loss(neg_elbo_per_class: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """M2 unlabelled term per sample: Σ_y q(y|x)·(−ELBO(x, y)) − H(q(y|x)).

    ``neg_elbo_per_class`` is (B, K): −ELBO with each class y filled in.
    """
    log_q = torch.log_softmax(logits, dim=1)
    q = log_q.exp()
    entropy = -(q * log_q).sum(1)
    return (q * neg_elbo_per_class).sum(1) - entropy
