"""Training-time augmentation, by name, with MONAI's transforms.

- ``dihedral``: one of the 8 rotations and flips per tile (the rasters' default).
- ``plain``: what generalises from few subjects: a random crop at a random position of each
  tile (so the position of a structure in the window cannot be memorised), random flips,
  affine and elastic deformation, then bias field, gamma, contrast and noise.
- ``synthseg``: ``plain``, after replacing each image, with probability ``synth_probability``,
  by one synthesised from its label map as SynthSeg does (Billot et al., 2023): every label
  gets a random Gaussian intensity, then random blur and resolution. The network must then
  segment by shape, whatever the contrast.

Image, label and valid mask move together; pixels moved in from outside the tile are invalid,
so they carry no label. The background of an image (all bands 0, as a skull-stripped MRI's is
after ``image_zscore``) stays 0.

``plain`` and ``synthseg`` draw from their own generators, seeded by the run's seed and the
rank; a run resumed from a checkpoint draws them afresh (``dihedral`` draws from torch's
generator, which checkpoints carry), so only ``dihedral`` runs resume bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tessera.models.kinds import Augment
from tessera.tasks.store.format import IGNORE

Batch = dict[str, Any]
KEYS = ("image", "label", "valid", "foreground")


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Rotate the last two axes by k·90° and optionally flip the last axis."""
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def augment_batch(batch: Batch, generator: torch.Generator | None = None) -> Batch:
    """Apply one random dihedral transform per sample, the same to image, label and valid mask."""
    out = dict(batch)
    n = batch["image"].shape[0]
    ks = torch.randint(0, 4, (n,), generator=generator).tolist()
    flips = torch.randint(0, 2, (n,), generator=generator).bool().tolist()
    for key in ("image", "label", "valid"):
        t = batch.get(key)
        if t is None:
            continue
        out[key] = torch.stack([dihedral(t[i], ks[i], flips[i]) for i in range(n)])
    return out


def crop_side(tile: int, crop: float) -> int:
    """The random crop's side: ``crop`` of the tile, a multiple of 8 (at least 8)."""
    return max(8, int(tile * crop) // 8 * 8)


def spatial_and_intensity(side: int) -> Any:
    """MONAI's dictionary transforms of ``plain`` for one sample (C, h, w), keyed as
    :data:`KEYS`."""
    from monai.transforms import (
        Compose,
        Rand2DElasticd,
        RandAdjustContrastd,
        RandAffined,
        RandBiasFieldd,
        RandFlipd,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandSpatialCropd,
    )

    modes = ("bilinear", "nearest", "nearest", "nearest")
    return Compose(
        [
            RandSpatialCropd(KEYS, roi_size=(side, side), random_size=False),
            RandFlipd(KEYS, prob=0.5, spatial_axis=0),
            RandFlipd(KEYS, prob=0.5, spatial_axis=1),
            RandAffined(
                KEYS,
                prob=0.8,
                rotate_range=math.pi / 12,
                scale_range=(0.15, 0.15),
                translate_range=(side / 16, side / 16),
                mode=modes,
                padding_mode="zeros",
            ),
            Rand2DElasticd(
                KEYS,
                spacing=(side / 3, side / 3),
                magnitude_range=(0.5, 2.0),
                prob=0.3,
                mode=modes,
                padding_mode="zeros",
            ),
            RandBiasFieldd("image", coeff_range=(0.0, 0.3), prob=0.3),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),
            RandScaleIntensityd("image", factors=0.2, prob=0.3),
            RandGaussianNoised("image", std=0.1, prob=0.3),
        ]
    )


def synthesised(
    image: torch.Tensor, label: torch.Tensor, foreground: torch.Tensor, rng: np.random.Generator
) -> torch.Tensor:
    """An image (C, h, w) drawn from ``label`` (h, w): per band and label a Gaussian of random
    mean and spread, blurred by a random partial-volume kernel and seen at a random lower
    resolution, z-scored over ``foreground`` (h, w) and 0 outside it."""
    import torch.nn.functional as F

    c, h, w = image.shape
    ids = label.long().clone()
    ids[ids == IGNORE] = int(ids[ids != IGNORE].max().item()) + 1 if (ids != IGNORE).any() else 0
    k = int(ids.max().item()) + 1
    means = torch.from_numpy(rng.uniform(0, 1, (c, k))).float()
    spreads = torch.from_numpy(rng.uniform(0, 0.1, (c, k))).float()
    noise = torch.from_numpy(rng.standard_normal((c, h, w))).float()
    x = means[:, ids] + spreads[:, ids] * noise
    sigma = rng.uniform(0.3, 1.0)
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    padded = F.pad(x[None], (radius,) * 4, mode="replicate")
    x = F.conv2d(padded, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    factor = rng.uniform(0.5, 1.0)  # resolution: down, then back up
    if factor < 0.95:
        small = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    x = x[0]
    fg = foreground.bool()
    if fg.any():
        vals = x[:, fg]
        x = (x - vals.mean(dim=1)[:, None, None]) / vals.std(dim=1).clamp_min(1e-6)[:, None, None]
    return torch.where(fg[None], x, 0.0)


class Augmenter:
    """``plain`` or ``synthseg`` for whole batches: each sample transformed on its own.

    Args:
        how: ``plain`` or ``synthseg``.
        tile: The tiles' side, in pixels.
        crop: The random crop's side as a share of the tile.
        synth_probability: ``synthseg``: the share of images replaced by synthesised ones.
        seed: Seeds MONAI's and the synthesiser's generators (add the rank under DDP).
    """

    def __init__(
        self, how: Augment, tile: int, crop: float, synth_probability: float, seed: int
    ) -> None:
        self.how, self.synth_probability = how, synth_probability
        self.side = crop_side(tile, crop)
        self.transforms = spatial_and_intensity(self.side)
        self.transforms.set_random_state(seed=seed)
        self.rng = np.random.default_rng(seed)

    def _one(self, image: torch.Tensor, label: torch.Tensor | None, valid: torch.Tensor) -> Batch:
        foreground = (image != 0).any(dim=0) & valid.bool()
        lab = label if label is not None else torch.full(valid.shape, IGNORE, dtype=torch.int64)
        labelled = bool((lab != IGNORE).any())
        if self.how == "synthseg" and labelled and self.rng.random() < self.synth_probability:
            image = synthesised(image, lab, foreground, self.rng)
        sample = {
            "image": image.float(),
            "label": lab[None].float(),
            "valid": valid[None].float(),
            "foreground": foreground[None].float(),
        }
        out = self.transforms(sample)
        ok = torch.as_tensor(out["valid"][0]) > 0.5
        fg = torch.as_tensor(out["foreground"][0]) > 0.5
        img = torch.as_tensor(out["image"]).float() * fg[None]
        lab_out = torch.where(ok, torch.as_tensor(out["label"][0]).round().long(), IGNORE)
        plain = torch.Tensor  # MONAI's MetaTensor back to a tensor
        return {
            "image": img.as_subclass(plain),
            "label": lab_out.as_subclass(plain),
            "valid": ok.as_subclass(plain),
        }

    def __call__(self, batch: Batch) -> Batch:
        n = batch["image"].shape[0]
        labels = batch.get("label")
        parts = [
            self._one(
                batch["image"][i].cpu(),
                None if labels is None else labels[i].cpu(),
                batch["valid"][i].cpu(),
            )
            for i in range(n)
        ]
        device = batch["image"].device
        out = dict(batch)
        out["image"] = torch.stack([p["image"] for p in parts]).to(device)
        out["valid"] = torch.stack([p["valid"] for p in parts]).to(device)
        if labels is not None:
            out["label"] = torch.stack([p["label"] for p in parts]).to(device)
        return out


def augmenter(
    how: Augment, tile: int, crop: float = 0.75, synth_probability: float = 0.5, seed: int = 0
) -> Callable[[Batch], Batch] | None:
    """The batch transform ``how`` names (None for ``none``)."""
    if how == "none":
        return None
    if how == "dihedral":
        return augment_batch
    return Augmenter(how, tile, crop, synth_probability, seed)
