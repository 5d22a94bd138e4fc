"""Augmentation by name: MONAI's spatial and intensity transforms, and SynthSeg's images."""

from __future__ import annotations

import numpy as np
import torch

from tessera.models.data.augment import Augmenter, synthesised
from tessera.tasks.store.format import IGNORE


def _tiles(n: int = 6, side: int = 64) -> dict[str, torch.Tensor]:
    """Label 0 outside a disc (image 0: background), 1 in a ring, 2 inside; image = label
    intensity 1, 2, 3 on the disc; the right quarter unlabelled."""
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    r2 = (yy - side / 2) ** 2 + (xx - side / 2) ** 2
    label = torch.where(r2 < (side / 3) ** 2, 1, 0) + torch.where(r2 < (side / 6) ** 2, 1, 0)
    image = torch.where(r2 < (side / 3) ** 2, label + 1.0, 0.0)[None]
    label = label.clone()
    label[:, -side // 4 :] = IGNORE
    return {
        "image": image.repeat(n, 1, 1, 1),
        "label": label.repeat(n, 1, 1),
        "valid": torch.ones(n, side, side, dtype=torch.bool),
        "meta": [None] * n,
    }


def test_plain_crops_at_random_positions_and_moves_label_and_image_together():
    batch = _tiles()
    out = Augmenter("plain", 64, 0.75, 0.5, seed=3)(batch)
    assert out["image"].shape == (6, 1, 48, 48) and out["label"].shape == (6, 48, 48)
    assert not torch.equal(out["image"][0], out["image"][1])  # each tile its own draw
    lab, img, ok = out["label"], out["image"][:, 0], out["valid"]
    assert (lab[~ok] == IGNORE).all()  # moved in from outside the tile: no label
    known = ok & (lab != IGNORE)
    means = [float(img[known & (lab == c)].mean()) for c in (0, 1, 2)]
    assert means[0] == 0.0  # the background stays 0 through every intensity transform
    assert means[0] < means[1] < means[2]  # the label still sits on its own intensity
    # the image's foreground and the label's foreground are the same pixels, to a rim
    agree = ((img != 0) == (lab > 0))[known].float().mean()
    assert agree > 0.97


def test_the_same_seed_gives_the_same_batch():
    a = Augmenter("plain", 64, 0.75, 0.5, seed=1)(_tiles())
    b = Augmenter("plain", 64, 0.75, 0.5, seed=1)(_tiles())
    c = Augmenter("plain", 64, 0.75, 0.5, seed=2)(_tiles())
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], c["image"])


def test_synthseg_draws_an_intensity_per_label_inside_the_foreground():
    t = _tiles(1)
    image, label = t["image"][0], t["label"][0]
    fg = image[0] != 0
    rng = np.random.default_rng(0)
    draws = [synthesised(image, label, fg, rng)[0] for _ in range(8)]
    for x in draws:
        assert (x[~fg] == 0).all()
        assert float(x[fg].mean()) == 0.0 or abs(float(x[fg].mean())) < 1e-4
        assert abs(float(x[fg].std()) - 1) < 1e-2
        inner = (label == 2) & fg
        ring = (label == 1) & fg
        # per-label intensities: the labels' means differ by more than a label's spread
        gap = abs(float(x[inner].mean() - x[ring].mean()))
        assert gap > float(x[ring].std()) or gap > float(x[inner].std())
    # the contrast between labels is random: ring brighter than the core in some draws only
    order = {bool(x[(label == 1) & fg].mean() > x[(label == 2) & fg].mean()) for x in draws}
    assert order == {True, False}


def test_synthseg_replaces_only_labelled_images_at_its_probability():
    batch = _tiles(8)
    always = Augmenter("synthseg", 64, 1.0, 1.0, seed=0)
    never = Augmenter("synthseg", 64, 1.0, 0.0, seed=0)
    a, b = always(batch), never(batch)
    fg = a["image"][:, 0] != 0
    assert abs(float(a["image"][:, 0][fg].mean())) < 0.5  # z-scored: mean about 0
    assert float(b["image"][:, 0][b["image"][:, 0] != 0].mean()) > 1.0  # the 1-3 image


def test_cropping_augmentation_is_refused_for_a_model_that_reads_whole_tiles():
    import pytest
    from pydantic import ValidationError

    from tessera.flows.settings.schema import ExperimentParams

    vae = {"type": "vae", "latent_dim": 4}
    with pytest.raises(ValidationError, match="only seg_ae takes"):
        ExperimentParams(dataset={"sources": ["s"], "augment": "plain"}, model=vae)
    ExperimentParams(dataset={"sources": ["s"], "augment": "dihedral"}, model=vae)
    ExperimentParams(dataset={"sources": ["s"], "augment": "synthseg"}, model={"type": "seg_ae"})


def test_a_single_tile_is_normalised_per_scene_as_a_batch_is(prefect_api, tmp_path):
    from tessera.models.data.tiles import TileDataset
    from tests.helpers import write_nifti

    rng = np.random.default_rng(0)
    vol = np.where(rng.random((24, 24, 6)) > 0.3, rng.normal(100, 10, (24, 24, 6)), 0)
    src = write_nifti(tmp_path / "v.nii.gz", vol.astype(np.float32), np.eye(4))
    from tessera.flows.cli import run

    assert run(["tile", "--input", str(src), "--out", str(tmp_path / "t"), "--size", "8"]) == 0
    ds = TileDataset(tmp_path / "t", normalisation="image_zscore")
    batch = ds.__getitems__([0, 1, 2])
    for i in range(3):
        assert torch.equal(ds[i]["image"], batch["image"][i])
