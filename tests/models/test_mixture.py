"""VaDE's mixture prior: its KL against closed forms and sampling, seeding, responsibilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tessera.models.nets.mixture import MixturePrior
from tessera.models.scoring.losses import kl_normal


def test_one_standard_component_gives_the_standard_normal_kl():
    torch.manual_seed(0)
    prior = MixturePrior(1, 3)
    with torch.no_grad():
        prior.means.zero_()
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3) * 0.3
    z = mu + torch.randn_like(mu)
    expected = kl_normal(mu, logvar).sum(1)
    assert torch.allclose(prior.kl(mu, logvar, z), expected, atol=1e-5)


def test_mixture_kl_matches_monte_carlo_with_the_draws_responsibilities():
    """KL(q(z,c|x) ‖ p(z,c)) with q(c|x) = q(c|z) at one draw: closed-form z-part vs sampling."""
    torch.manual_seed(0)
    prior = MixturePrior(3, 2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[0.0, 0.0], [2.0, 1.0], [-1.5, 2.0]]))
        prior.logvars.copy_(torch.tensor([[0.0, -0.5], [0.3, 0.0], [-0.2, 0.4]]))
        prior.logits.copy_(torch.tensor([0.0, 0.5, -0.3]))
    mu, logvar = torch.tensor([[1.0, 0.5]]), torch.tensor([[-0.7, -0.2]])
    z = torch.tensor([[1.2, 0.4]])
    gamma = prior.responsibilities(z)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    draws = q.sample((200_000,)).squeeze(1)
    comps = torch.distributions.Normal(prior.means, torch.exp(0.5 * prior.logvars))
    log_p = comps.log_prob(draws[:, None, :]).sum(-1)  # (S, C)
    log_pi = torch.log_softmax(prior.logits, 0)
    mc = q.log_prob(draws).sum(-1).mean() - (gamma * (log_p.mean(0) + log_pi - gamma.log())).sum()
    assert float(prior.kl(mu, logvar, z)) == pytest.approx(float(mc), rel=0.01)


def test_seeding_finds_separated_clusters_and_assigns_them():
    rng = np.random.default_rng(0)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
    truth = rng.integers(0, 3, 300)
    points = centres[truth] + 0.3 * rng.standard_normal((300, 2))
    prior = MixturePrior(3, 2)
    spread = np.full_like(points, 0.5**2)  # each point's posterior variance
    prior.seed(points, spread)
    variance = prior.logvars.exp().detach().numpy()
    assert np.allclose(variance, 0.3**2 + 0.5**2, rtol=0.3)  # the aggregate posterior's
    found = sorted(prior.means.detach().numpy().round().tolist())
    assert found == sorted(centres.tolist())
    own = prior.responsibilities(torch.as_tensor(points, dtype=torch.float32)).argmax(1).numpy()
    pairs = {(int(a), int(b)) for a, b in zip(truth, own, strict=True)}
    assert len(pairs) == 3  # one component per true cluster, no point astray
