"""Models and data: CVAE sampling and conditioning, diagnostics, augmentation, tile classes."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tessera.models.data.augment import augment_batch
from tessera.models.data.datamodule import keep_labels_per_class, tile_classes
from tessera.models.run.run_config import model_schema, validate_model_params
from tessera.models.scoring.diagnostics import active_units, collapse_message
from tessera.models.trainers import SegAEModule, SSVAEModule, VAEModule


def _two_class_images(n: int = 128, seed: int = 0) -> list[dict]:
    """8×8 single-channel tiles: class 0 dark left half, class 1 dark right half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.zeros(n, 1, 8, 8)
    x[y == 0, :, :, 4:] = 1.0
    x[y == 1, :, :, :4] = 1.0
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    return [
        {"image": x[i], "valid": torch.ones(8, 8, dtype=torch.bool), "target": y[i]}
        for i in range(n)
    ]


def _fit(module: pl.LightningModule, samples: list[dict], epochs: int) -> None:
    loader = DataLoader(samples, batch_size=32, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader, loader)


def _tiny_vae(**options) -> VAEModule:
    """A VAEModule on 8×8 single-channel tiles with widths [8, 16], plus ``options``."""
    return VAEModule(in_channels=1, image_size=8, widths=[8, 16], **options)


def test_cvae_sample_shapes_and_class_conditioning():
    pl.seed_everything(0, verbose=False)
    cvae = _tiny_vae(num_classes=2, model_type="cvae", latent_dim=2, rec_loss="bce", norm="none")
    with pytest.raises(ValueError, match="class y"):
        cvae.sample(3)
    assert cvae.sample(5, 1).shape == (5, 1, 8, 8)
    _fit(cvae, _two_class_images(), epochs=25)
    cvae.eval()
    left0 = cvae.sample(64, 0)[..., :4].mean() - cvae.sample(64, 0)[..., 4:].mean()
    left1 = cvae.sample(64, 1)[..., :4].mean() - cvae.sample(64, 1)[..., 4:].mean()
    assert float(left0) < -0.3 < 0.3 < float(left1)  # class 0 is bright right, class 1 left


def test_vae_factor_and_dec_options_train_with_two_optimisers():
    pl.seed_everything(0, verbose=False)
    vae = _tiny_vae(
        latent_dim=4,
        tc_weight=2.0,
        cluster_reg="dec",
        n_clusters=2,
        warmup="cyclical",
        warmup_steps=8,
        free_bits=0.05,
    )
    assert len(vae.configure_optimizers()) == 2
    disc_before = [p.clone() for p in vae.discriminator.parameters()]
    _fit(vae, _two_class_images(64), epochs=2)
    after = list(vae.discriminator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, after, strict=True))
    assert int(vae.kl_step) == 4  # 2 epochs × 2 batches
    assert bool(vae.dec_ready)  # centroids seeded by k-means on μ at the first epoch


def test_vade_prior_is_seeded_then_separates_the_two_classes():
    pl.seed_everything(0, verbose=False)
    vade = _tiny_vae(
        latent_dim=2, rec_loss="bce", cluster_reg="vade", n_clusters=2, cluster_warmup_epochs=2
    )
    assert vade.mixture is not None and vade.centroids is None
    samples = _two_class_images(128)
    _fit(vade, samples, epochs=2)
    assert not bool(vade.dec_ready)  # still the standard-normal prior
    before = vade.mixture.means.detach().clone()
    _fit(vade, samples, epochs=6)
    assert bool(vade.dec_ready)
    assert not torch.equal(before, vade.mixture.means.detach())
    vade.eval()
    x = torch.stack([s["image"] for s in samples])
    truth = torch.stack([s["target"] for s in samples])
    with torch.no_grad():
        own = vade.mixture.responsibilities(vade.encode(x)[0]).argmax(1)
    agree = float((own == truth).float().mean())
    assert max(agree, 1 - agree) > 0.95


def test_active_units_and_posterior_collapse_warning():
    torch.manual_seed(0)
    mu = torch.cat([torch.randn(100, 2), torch.full((100, 1), 0.3)], dim=1)
    assert active_units(mu).tolist() == [True, True, False]
    assert collapse_message(2, 3) is None
    assert "posterior collapse" in collapse_message(0, 3)


def test_collapsed_vae_warns_during_validation():
    pl.seed_everything(0, verbose=False)
    vae = VAEModule(in_channels=1, image_size=8, latent_dim=2, widths=[4, 8], beta=1000.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(vae, _two_class_images(64), epochs=3)
    assert any("posterior collapse" in str(w.message) for w in caught)


def test_ssvae_mixes_labelled_and_unlabelled_tiles():
    pl.seed_everything(0, verbose=False)
    m2 = SSVAEModule(in_channels=1, image_size=8, num_classes=2, latent_dim=2, widths=[8, 16])
    samples = _two_class_images(128)
    truth = torch.stack([s["target"] for s in samples])
    for i, s in enumerate(samples):
        if i >= 8:
            s["target"] = torch.tensor(-1)
    batch = {k: torch.stack([s[k] for s in samples[:16]]) for k in ("image", "valid", "target")}
    terms, _ = m2._losses(batch)
    assert {"labelled", "unlabelled", "ce"} <= set(terms)
    _fit(m2, samples, epochs=15)
    m2.eval()
    x = torch.stack([s["image"] for s in samples])
    acc = float((m2(x).argmax(1) == truth).float().mean())
    assert acc > 0.9


def test_seg_ae_tiles_without_labels_pay_reconstruction_only():
    module = SegAEModule(
        in_channels=2,
        num_classes=3,
        widths=[4, 8],
        latent_channels=4,
        dilations=[1],
        seg_weight=5.0,
    )
    x = torch.randn(2, 2, 16, 16)
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    unlabelled = {"image": x, "valid": valid, "label": torch.full((2, 16, 16), 255)}
    terms, _ = module._losses(unlabelled)
    assert float(terms["seg"]) == 0.0
    assert float(terms["loss"]) == pytest.approx(float(terms["rec"]))
    labelled = dict(unlabelled, label=torch.zeros(2, 16, 16, dtype=torch.long))
    terms, _ = module._losses(labelled)
    assert float(terms["seg"]) > 0


def test_augmentation_moves_image_label_and_mask_together():
    torch.manual_seed(0)
    n = 32
    image = torch.randn(n, 2, 8, 8)
    label = image[:, 0].gt(0).long()
    valid = image[:, 1].gt(0)
    out = augment_batch({"image": image, "label": label, "valid": valid, "meta": [None] * n})
    assert torch.equal(out["label"], out["image"][:, 0].gt(0).long())
    assert torch.equal(out["valid"], out["image"][:, 1].gt(0))
    assert not torch.equal(out["image"], image)  # something moved
    assert torch.equal(image, image.clone())  # input batch unchanged


def test_tile_classes_and_labels_per_class():
    fr = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.96, 0.04, 0.0], None]
    has = np.array([True, True, True, False])
    assert tile_classes(fr, has, "majority").tolist() == [0, 2, 0, -1]
    assert tile_classes(fr, has, "presence", 0.05).tolist() == [1, 2, 0, -1]
    assert tile_classes(fr, has, "none").tolist() == [-1, -1, -1, -1]
    targets = np.array([0] * 10 + [1] * 10 + [-1] * 5)
    rows = np.arange(25)
    kept = keep_labels_per_class(targets, rows, 3, seed=0)
    assert np.bincount(kept[kept >= 0]).tolist() == [3, 3]
    assert kept.tolist() == keep_labels_per_class(targets, rows, 3, seed=0).tolist()


def test_model_params_are_checked_against_the_module_signature():
    full = validate_model_params({"type": "seg_ae", "dilations": [1, 2]})
    assert full["dilations"] == [1, 2] and full["conv"] == "standard"
    assert "in_channels" not in model_schema("seg_ae").model_fields
    with pytest.raises(ValueError, match="conv"):
        validate_model_params({"type": "seg_ae", "conv": "fancy"})
    with pytest.raises(ValueError, match="extra"):
        validate_model_params({"type": "vae", "dilatons": [1]})
    with pytest.raises(ValueError, match="unknown model type"):
        validate_model_params({"type": "gan"})


def test_ssvae_per_element_elbo_is_the_summed_elbo_over_the_tile_size():
    pl.seed_everything(0, verbose=False)
    kw = {"in_channels": 1, "image_size": 8, "num_classes": 2, "latent_dim": 2, "widths": [4, 8]}
    summed, mean = SSVAEModule(**kw), SSVAEModule(**kw, elbo_reduction="mean")
    mean.load_state_dict(summed.state_dict())
    summed.eval()
    mean.eval()
    x, valid, y = (
        torch.rand(3, 1, 8, 8),
        torch.ones(3, 8, 8, dtype=torch.bool),
        torch.tensor([0, 1, 1]),
    )
    torch.testing.assert_close(
        mean._neg_elbo(x, valid, y)[0], summed._neg_elbo(x, valid, y)[0] / 64
    )


def test_oversampling_gives_batches_the_asked_share_of_labelled_tiles(tmp_path):
    from tessera.models.data.datamodule import oversample_labelled

    class Fake:
        indices = np.arange(100)
        targets = np.array([0, 1] * 5 + [-1] * 90)

    ds = Fake()
    repeat = oversample_labelled(ds, 0.25)  # type: ignore[arg-type]
    share = (ds.targets[ds.indices] >= 0).mean()
    assert repeat == 3 and 0.25 <= share < 0.3
    assert set(ds.indices) == set(range(100))  # nothing dropped, labelled rows repeated
    assert oversample_labelled(ds, 0.2) == 1  # already above the share
