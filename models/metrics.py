"""Image metrics on tensors: reconstruction over valid pixels, and per-class segmentation.

Built on torchmetrics (SSIM, F1 = Dice, Jaccard = IoU) rather than written by hand.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex
from torchmetrics.functional.image import structural_similarity_index_measure

from tessera.tasks.store.format import IGNORE


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


class SegmentationMeter:
    """Per-class Dice (= F1) and IoU accumulated over batches with torchmetrics.

    Pixels labelled 255 are ignored; a class absent from every prediction and label is NaN
    and left out of the means.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.f1 = MulticlassF1Score(num_classes, average="none")
        self.iou = MulticlassJaccardIndex(num_classes, average="none")
        self.present = torch.zeros(num_classes, dtype=torch.bool)

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch of predicted and true class maps (any matching shapes)."""
        known = label.flatten() != IGNORE
        p, t = pred.flatten()[known].cpu(), label.flatten()[known].cpu()
        if not len(t):
            return
        self.f1.update(p, t)
        self.iou.update(p, t)
        k = self.num_classes
        self.present |= (torch.bincount(p, minlength=k) + torch.bincount(t, minlength=k))[:k] > 0

    def compute(self) -> dict[str, float]:
        """``dice_<c>``, ``iou_<c>``, ``dice_mean`` and ``iou_mean``."""
        nan = torch.tensor(float("nan"))
        if not bool(self.present.any()):
            dice = iou = torch.full((self.num_classes,), float("nan"))
        else:
            dice = torch.where(self.present, self.f1.compute(), nan)
            iou = torch.where(self.present, self.iou.compute(), nan)
        out: dict[str, float] = {}
        for c in range(self.num_classes):
            out[f"dice_{c}"], out[f"iou_{c}"] = float(dice[c]), float(iou[c])
        out["dice_mean"] = float(torch.nanmean(dice))
        out["iou_mean"] = float(torch.nanmean(iou))
        return out


def segmentation_scores(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int
) -> dict[str, float]:
    """Dice and IoU per class, pooled over all pixels, plus their means (see the meter)."""
    meter = SegmentationMeter(num_classes)
    meter.update(pred, label)
    return meter.compute()


class ReconstructionMeter:
    """MSE, PSNR and SSIM over valid pixels, accumulated over batches.

    SSIM is the mean of each batch's SSIM map over its valid pixels, weighted by their count;
    PSNR is taken from the pooled MSE.
    """

    def __init__(self, data_range: float) -> None:
        self.data_range = data_range
        self.sq_err = self.ssim_sum = self.count = 0.0

    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """Add a (B, C, H, W) batch and its (B, H, W) valid mask."""
        n = float(_mask(valid, target).sum())
        if n == 0:
            return
        self.sq_err += masked_mse(pred, target, valid) * n
        self.ssim_sum += masked_ssim(pred, target, valid, self.data_range) * n
        self.count += n

    def compute(self) -> dict[str, float]:
        """``mse``, ``psnr`` (dB) and ``ssim``."""
        if self.count == 0:
            return {"mse": math.nan, "psnr": math.nan, "ssim": math.nan}
        mse = self.sq_err / self.count
        psnr = math.inf if mse == 0 else 10.0 * math.log10(self.data_range**2 / mse)
        return {"mse": mse, "psnr": psnr, "ssim": self.ssim_sum / self.count}
