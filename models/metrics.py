"""Image metrics on tensors: reconstruction over valid pixels, and per-class segmentation.

Built on torchmetrics (SSIM, F1 = Dice, Jaccard = IoU) rather than written by hand.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import multiclass_f1_score, multiclass_jaccard_index
from torchmetrics.functional.image import structural_similarity_index_measure

from tasks.labels import IGNORE


def _mask(valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return valid.unsqueeze(1).expand_as(like).to(like.dtype)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean squared error over valid pixels of (B, C, H, W) tensors; ``valid`` is (B, H, W)."""
    m = _mask(valid, target)
    return float(((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1))


def masked_psnr(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, data_range: float
) -> float:
    """Peak signal-to-noise ratio (dB) over valid pixels: 10·log10(range² / MSE)."""
    mse = masked_mse(pred, target, valid)
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def masked_ssim(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, data_range: float
) -> float:
    """Mean of torchmetrics' SSIM map (Gaussian window 11, σ 1.5) over valid pixels."""
    _, ssim_map = structural_similarity_index_measure(
        pred.double(), target.double(), data_range=data_range, return_full_image=True
    )
    assert isinstance(ssim_map, torch.Tensor)
    m = _mask(valid, ssim_map)
    return float((ssim_map * m).sum() / m.sum().clamp_min(1))


def segmentation_scores(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int
) -> dict[str, float]:
    """Dice (= F1) and IoU per class, pooled over all pixels, plus their means over classes.

    Pixels labelled 255 are ignored; a class absent from both prediction and label is NaN
    and left out of the means.
    """
    known = label.flatten() != IGNORE
    p, t = pred.flatten()[known], label.flatten()[known]
    present = torch.stack([((p == c) | (t == c)).any() for c in range(num_classes)])
    nan = torch.tensor(float("nan"))
    dice = torch.where(present, multiclass_f1_score(p, t, num_classes, average="none"), nan)
    iou = torch.where(present, multiclass_jaccard_index(p, t, num_classes, average="none"), nan)
    out: dict[str, float] = {}
    for c in range(num_classes):
        out[f"dice_{c}"], out[f"iou_{c}"] = float(dice[c]), float(iou[c])
    out["dice_mean"] = float(torch.nanmean(dice))
    out["iou_mean"] = float(torch.nanmean(iou))
    return out
