"""Latent-space diagnostics for VAEs: KL per dimension, active units, posterior collapse."""

from __future__ import annotations

import torch

ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Burda et al. (2016): dimension d is active when Cov_x(E_q[z_d | x]) > ``threshold``.

    ``mu`` is (N, D), the posterior means over a data set; returns a (D,) bool mask.
    """
    if mu.shape[0] < 2:
        return torch.zeros(mu.shape[1], dtype=torch.bool, device=mu.device)
    return mu.var(dim=0, unbiased=True) > threshold


def collapse_message(n_active: int, latent_dim: int) -> str | None:
    """A warning when no latent dimension is active (the posterior collapsed onto the prior)."""
    if n_active > 0:
        return None
    return (
        f"posterior collapse: 0 of {latent_dim} latent dimensions are active "
        f"(Cov_x E[z|x] <= {ACTIVE_UNIT_THRESHOLD}); lower beta, add KL warm-up or free bits"
    )
