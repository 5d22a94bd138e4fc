"""Losses and schedules: closed forms against estimates, M2 on a toy problem, warm-up values."""

from __future__ import annotations

import math

import pytest
import torch

from tessera.models.scoring.losses import (
    MaskedDiceCELoss,
    TCDiscriminator,
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
    permute_dims,
    reconstruction_nll,
    soft_dice_loss,
    total_correlation,
)


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[0.0, -1.0, 0.7]])
    closed = kl_normal(mu, logvar).sum()
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert float(closed) == pytest.approx(float(mc), rel=0.02)
    assert float(kl_normal(torch.zeros(1, 4), torch.zeros(1, 4)).sum()) == 0.0


def test_free_bits_floor_each_dimension():
    per_dim = torch.tensor([[0.01, 2.0], [0.03, 4.0]])  # batch means 0.02 and 3.0
    assert float(free_bits_kl(per_dim, 0.5)) == pytest.approx(0.5 + 3.0)
    assert float(free_bits_kl(per_dim, 0.0)) == pytest.approx(3.02)


def test_cyclical_and_linear_warmup_values():
    # 4 cycles over 100 steps: period 25, rising over the first half (12.5 steps)
    got = [
        kl_weight(s, "cyclical", 100, cycles=4, ratio=0.5) for s in (0, 5, 10, 12, 13, 24, 25, 30)
    ]
    assert got == pytest.approx([0.0, 0.4, 0.8, 0.96, 1.0, 1.0, 0.0, 0.4])
    assert kl_weight(100, "cyclical", 100) == 1.0
    assert kl_weight(250, "cyclical", 100) == 1.0
    assert [kl_weight(s, "linear", 10) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_weight(3, "none", 10) == 1.0


def test_reconstruction_losses_respect_the_valid_mask():
    x = torch.zeros(2, 1, 2, 2)
    out = torch.ones(2, 1, 2, 2)
    valid = torch.tensor([[[True, True], [False, False]], [[True, False], [False, False]]])
    total, count = reconstruction_nll("mse", out, x, valid)
    assert total.tolist() == [2.0, 1.0] and count.tolist() == [2.0, 1.0]
    l1, _ = reconstruction_nll("l1", 3 * out, x)
    assert l1.tolist() == [12.0, 12.0]
    bce, _ = reconstruction_nll("bce", torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    assert float(bce) == pytest.approx(math.log(2))
    # Gaussian NLL with learned variance: mean 0, log σ² = 0 at x = 0 → ½·log 2π per element
    g, _ = reconstruction_nll("gaussian_nll", torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, 1))
    assert float(g) == pytest.approx(0.5 * math.log(2 * math.pi))


def test_latent_regularisers():
    z = torch.tensor([[[[1.0]], [[-3.0]]]])
    assert float(latent_penalty(z, "l1")) == 2.0
    assert float(latent_penalty(z, "l2")) == 5.0
    assert float(latent_penalty(z, "none")) == 0.0
    torch.manual_seed(0)
    a = torch.randn(4000, 1, 1, 1)
    independent = torch.cat([a, torch.randn(4000, 1, 1, 1)], dim=1)
    correlated = torch.cat([a, 2 * a], dim=1)
    assert float(orthogonality_penalty(independent)) < 0.01
    assert float(orthogonality_penalty(correlated)) == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize("shape", [(4, 3, 16, 16), (2, 2, 5, 6, 7)])
def test_soft_dice_is_monais_dice_loss_bit_for_bit(shape):
    from monai.losses import DiceLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g)
    label = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    onehot = torch.movedim(torch.nn.functional.one_hot(label, shape[1]), -1, 1).float()
    onehot[0, :, :2] = 0  # masked pixels, as MaskedDiceCELoss gives them
    ours_in = logits.clone().requires_grad_()
    theirs_in = logits.clone().requires_grad_()
    ours = soft_dice_loss(torch.softmax(ours_in, 1), onehot)
    theirs = DiceLoss(include_background=True, softmax=False, batch=True)(
        torch.softmax(theirs_in, 1), onehot
    )
    ours.backward()
    theirs.backward()
    assert torch.equal(ours, theirs) and 0 < ours.item() < 1
    assert ours_in.grad is not None and theirs_in.grad is not None
    assert torch.equal(ours_in.grad, theirs_in.grad)


def test_masked_dice_ce_ignores_unknown_pixels_and_unlabelled_tiles():
    loss = MaskedDiceCELoss(2)
    logits = torch.zeros(1, 2, 2, 2)
    all_unknown = torch.full((1, 2, 2), 255)
    assert float(loss(logits, all_unknown)) == 0.0
    good = torch.tensor([[[0, 0], [1, 1]]])
    perfect = torch.stack([(good == 0), (good == 1)], 1).float() * 20
    assert float(loss(perfect, good)) < 0.01
    # a wrong prediction on an ignored pixel changes nothing
    partly = good.clone()
    partly[0, 0, 0] = 255
    wrong = perfect.clone()
    wrong[0, :, 0, 0] = torch.tensor([-20.0, 20.0])
    assert float(loss(wrong, partly)) == pytest.approx(float(loss(perfect, partly)), abs=1e-4)


def test_m2_losses_on_a_two_class_toy_problem():
    # class 1 explains x far better than class 0: −ELBO(x, y) = [10, 2]
    neg = torch.tensor([[10.0, 2.0]])
    logits = torch.zeros(1, 2, requires_grad=True)
    u = m2_unlabelled_loss(neg, logits)
    # q = (½, ½): Σ q·L − H = 6 − log 2
    assert float(u) == pytest.approx(6.0 - math.log(2))
    u.sum().backward()
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]  # descent moves q(y|x) towards class 1
    lab = m2_labelled_loss(torch.tensor([3.0]), torch.tensor([[0.0, 0.0]]), torch.tensor([1]), 2.0)
    assert float(lab) == pytest.approx(3.0 + 2.0 * math.log(2))


def test_m2_semi_supervised_classifier_learns_from_unlabelled_data():
    """Two Gaussian blobs; one label per class; the unlabelled term places the boundary."""
    torch.manual_seed(0)
    n = 400
    y = torch.randint(0, 2, (n,))
    x = torch.randn(n, 2) * 0.5 + torch.stack([4 * y - 2, torch.zeros(n)], 1).float()
    labelled = torch.tensor([int(torch.nonzero(y == c)[0]) for c in (0, 1)])
    clf = torch.nn.Linear(2, 2)
    means = torch.nn.Parameter(torch.tensor([[-0.5, 0.0], [0.5, 0.0]]))  # p(x|y) = N(m_y, ½)
    opt = torch.optim.Adam([*clf.parameters(), means], lr=0.05)
    for _ in range(300):
        neg = ((x[:, None, :] - means[None]) ** 2).sum(-1) / 0.5  # −log p(x|y) + const
        logits = clf(x)
        unl = m2_unlabelled_loss(neg, logits).mean()
        lab = m2_labelled_loss(neg[labelled, y[labelled]], logits[labelled], y[labelled], 5.0)
        opt.zero_grad()
        (unl + lab.mean()).backward()
        opt.step()
    acc = float((clf(x).argmax(1) == y).float().mean())
    assert acc > 0.97


def test_factor_vae_discriminator_step_learns_to_spot_correlated_latents():
    torch.manual_seed(0)
    disc = TCDiscriminator(2, hidden=32)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    a = torch.randn(512, 1)
    z = torch.cat([a, a + 0.05 * torch.randn(512, 1)], 1)  # strongly dependent dims
    shuffled = permute_dims(z)
    assert sorted(shuffled[:, 0].tolist()) == sorted(z[:, 0].tolist())  # marginals kept
    start = float(discriminator_loss(disc, z, z))
    for _ in range(150):
        loss = discriminator_loss(disc, z, z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(discriminator_loss(disc, z, z)) < 0.5 * start
    assert float(total_correlation(disc, z)) > 1.0  # TC estimate is large for dependent dims
    independent = torch.randn(512, 2)
    assert float(total_correlation(disc, independent)) < float(total_correlation(disc, z))


def test_dec_soft_assignment_and_target_sharpening():
    z = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
    centroids = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    q = dec_soft_assignment(z, centroids)
    torch.testing.assert_close(q.sum(1), torch.ones(3))
    assert q[0, 0] > 0.9 and q[2, 1] > 0.9
    assert float(dec_loss(q)) >= 0.0
    flat = torch.full((4, 2), 0.5)
    assert float(dec_loss(flat)) == pytest.approx(0.0, abs=1e-6)


def test_focal_term_discounts_easy_pixels():
    label = torch.tensor([[[0, 1]]])
    logits = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])  # pixel 0 easy, pixel 1 a coin toss
    plain = MaskedDiceCELoss(2)._cross_entropy(logits, label)
    focal = MaskedDiceCELoss(2, focal_gamma=2.0)._cross_entropy(logits, label)
    assert 0 < float(focal) < float(plain)
    easy_share = lambda loss: float(loss._cross_entropy(logits[..., :1], label[..., :1]))  # noqa: E731
    assert easy_share(MaskedDiceCELoss(2, focal_gamma=2.0)) < 1e-3 * easy_share(MaskedDiceCELoss(2))
