"""VaDE's mixture-of-Gaussians prior p(z) = Σ_c π_c N(z; μ_c, diag σ_c²) (Jiang et al. 2017)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


class MixturePrior(nn.Module):
    """A learnable diagonal Gaussian mixture over the latent space.

    Args:
        n_components: Mixture components (the clusters).
        latent_dim: Size of the latent vector z.
    """

    def __init__(self, n_components: int, latent_dim: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.randn(n_components, latent_dim))
        self.logvars = nn.Parameter(torch.zeros(n_components, latent_dim))

    def seed(self, mu: np.ndarray, var: np.ndarray, random_state: int = 0) -> None:
        """Match the mixture to the aggregate posterior Σ_x N(μ_x, σ²_x) of the latents: a
        diagonal Gaussian mixture fitted to the means ``mu``, each component's variance widened
        by the mean posterior variance ``var`` of its members (fitted to the means alone, the
        components are far narrower than q(z|x) itself, and the KL then collapses the latents)."""
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(
            len(self.logits),
            covariance_type="diag",
            n_init=2,
            reg_covar=1e-4,
            random_state=random_state,
        ).fit(mu)
        resp = gmm.predict_proba(mu)
        within = resp.T @ var / np.maximum(resp.sum(0), 1e-12)[:, None]
        with torch.no_grad():
            self.logits.copy_(torch.as_tensor(np.log(gmm.weights_), dtype=self.logits.dtype))
            self.means.copy_(torch.as_tensor(gmm.means_, dtype=self.means.dtype))
            variance = torch.as_tensor(gmm.covariances_ + within, dtype=self.means.dtype)
            self.logvars.copy_(variance.log())

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log π_c + log N(z; μ_c, σ_c²) per sample and component, (N, C)."""
        diff2 = (z[:, None, :] - self.means[None]).pow(2) / self.logvars.exp()[None]
        log_pdf = -0.5 * (LOG_2PI + self.logvars[None] + diff2).sum(-1)
        return torch.log_softmax(self.logits, 0)[None] + log_pdf

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """q(c | z): the posterior over components (rows sum to 1)."""
        return torch.softmax(self.log_joint(z), 1)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """VaDE's KL(q(z, c | x) ‖ p(z, c)) per sample, with q(c | x) ≈ q(c | z) at a draw z.

        E_q[log p(z | c)] is taken in closed form for the Gaussian q(z | x) = N(μ, σ²).
        """
        gamma = self.responsibilities(z)
        var = logvar.exp()[:, None, :]
        cross = 0.5 * (
            LOG_2PI
            + self.logvars[None]
            + (var + (mu[:, None, :] - self.means[None]).pow(2)) / self.logvars.exp()[None]
        ).sum(-1)
        log_pi = torch.log_softmax(self.logits, 0)[None]
        log_gamma = gamma.clamp_min(1e-12).log()
        entropy_z = 0.5 * (LOG_2PI + 1 + logvar).sum(1)
        return (gamma * (cross + log_gamma - log_pi)).sum(1) - entropy_z
