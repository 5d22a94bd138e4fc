"""Representation metrics on synthetic latents with a known structure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tessera.tasks.evaluation.latent_metrics import (
    cluster_accuracy,
    clustering_scores,
    info_nce,
    linear_probe_accuracy,
    retrieval_top1,
    silhouette_sweep,
)


def _blobs(n_per: int = 50, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(k, 4) * 20
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(size=(len(labels), 4)), labels


@pytest.mark.parametrize("how", ["kmeans", "gmm"])
def test_perfect_clusters_score_one(how):
    z, y = _blobs()
    s = clustering_scores(z, 3, y, how=how)
    assert s["nmi"] == pytest.approx(1.0)
    assert s["ari"] == pytest.approx(1.0)
    assert s["cluster_accuracy"] == pytest.approx(1.0)
    assert s["silhouette"] > 0.8 and s["davies_bouldin"] < 0.3


def test_random_assignment_scores_near_zero():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(600, 4))
    y = rng.integers(0, 3, 600)
    s = clustering_scores(z, 3, y)
    assert abs(s["nmi"]) < 0.02 and abs(s["ari"]) < 0.02
    assert s["cluster_accuracy"] < 0.45  # chance with the best matching is about 1/3


def test_hungarian_accuracy_on_a_permuted_labelling():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    assert cluster_accuracy(y, np.array([2, 2, 0, 0, 1, 1, 1])) == 1.0
    assert cluster_accuracy(y, np.array([5, 5, 7, 7, 9, 9, 7])) == pytest.approx(6 / 7)


def test_unknown_labels_are_left_out_of_external_scores():
    z, y = _blobs()
    y = y.copy()
    y[::2] = -1
    assert clustering_scores(z, 3, y)["nmi"] == pytest.approx(1.0)


def test_silhouette_sweep_peaks_at_the_true_k():
    z, _ = _blobs(k=3)
    sweep = silhouette_sweep(z, 6)
    assert list(sweep) == [2, 3, 4, 5, 6]
    assert max(sweep, key=sweep.get) == 3


def test_linear_probe_separates_blobs_and_not_noise():
    z, y = _blobs()
    assert linear_probe_accuracy(z, y) == 1.0
    rng = np.random.default_rng(2)
    assert linear_probe_accuracy(rng.normal(size=(150, 4)), rng.integers(0, 3, 150)) < 0.6


def test_contrastive_retrieval_and_info_nce():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(64, 8))
    assert retrieval_top1(z, z) == 1.0
    shuffled = z[rng.permutation(64)]
    assert retrieval_top1(z, shuffled) < 0.1
    assert info_nce(z, z) < info_nce(z, shuffled)
    # orthogonal identical views: loss = log(1 + (n-1)·e^{-1/τ}) exactly
    eye = np.eye(5)
    assert info_nce(eye, eye, 0.5) == pytest.approx(math.log(1 + 4 * math.exp(-2.0)))


def test_ssim_psnr_mse_on_known_pairs_and_only_over_valid_pixels():
    import torch

    from tessera.models.scoring.image_metrics import masked_mse, masked_psnr, masked_ssim

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    assert masked_ssim(x, x, valid, 1.0) == pytest.approx(1.0)
    assert masked_psnr(x + 0.1, x, valid, 1.0) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert masked_ssim(x.flip(-1), x, valid, 1.0) < 0.2
    half = valid.clone()
    half[:, :, 16:] = False
    broken = x.clone()
    broken[..., 16:] = 5.0  # garbage only where pixels are invalid
    assert masked_mse(broken, x, half) == 0.0
    assert masked_psnr(broken, x, half, 1.0) == math.inf


def test_segmentation_dice_and_iou_by_hand():
    import torch

    from tessera.models.scoring.image_metrics import segmentation_scores

    pred = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    label = torch.tensor([[0, 1, 1, 1], [2, 2, 255, 0]])
    s = segmentation_scores(pred, label, 4)
    assert s["dice_0"] == pytest.approx(0.5) and s["iou_0"] == pytest.approx(1 / 3)
    assert s["dice_1"] == pytest.approx(0.8) and s["iou_1"] == pytest.approx(2 / 3)
    assert s["dice_2"] == pytest.approx(0.8)  # the ignored pixel predicted 2 does not count
    assert math.isnan(s["dice_3"])  # absent everywhere: left out of the means
    assert s["dice_mean"] == pytest.approx(0.7)
    assert segmentation_scores(label.clamp(max=3), label, 4)["dice_mean"] == pytest.approx(1.0)


def test_segmentation_scores_equal_torchmetrics_f1_and_jaccard_exactly():
    import torch
    from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

    from tessera.models.scoring.image_metrics import SegmentationScores

    g = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 4, (5, 32, 32), generator=g)
    label = torch.randint(0, 4, (5, 32, 32), generator=g)
    label[:, :3] = 255
    ours = SegmentationScores(5)  # class 4 absent: NaN here, 0 in torchmetrics
    ours.update(pred, label)
    dice, iou = ours.compute()
    known = label != 255
    f1 = MulticlassF1Score(5, average="none")(pred[known], label[known])
    jac = MulticlassJaccardIndex(5, average="none")(pred[known], label[known])
    assert torch.equal(dice[:4], f1[:4]) and torch.equal(iou[:4], jac[:4])
    assert torch.isnan(dice[4]) and torch.isnan(iou[4])


def test_meters_streamed_over_batches_equal_one_pass():
    import torch

    from tessera.models.scoring.image_metrics import (
        ReconstructionMeter,
        SegmentationScores,
        segmentation_scores,
    )

    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 3, (6, 8, 8), generator=g)
    label = torch.randint(0, 3, (6, 8, 8), generator=g)
    label[0, :2] = 255
    meter = SegmentationScores(3)
    for i in range(0, 6, 4):  # batches of 4 and 2
        meter.update(pred[i : i + 4], label[i : i + 4])
    assert meter.scores() == pytest.approx(segmentation_scores(pred, label, 3))
    x = torch.rand(6, 2, 16, 16, generator=g)
    y = x + 0.1
    valid = torch.ones(6, 16, 16, dtype=torch.bool)
    valid[3:, :, 8:] = False
    rec = ReconstructionMeter(1.0)
    rec.update(y[:3], x[:3], valid[:3])
    rec.update(y[3:], x[3:], valid[3:])
    r = rec.compute()
    assert r["mse"] == pytest.approx(0.01, rel=1e-4) and r["psnr"] == pytest.approx(20.0, abs=1e-3)
    assert 0 < r["ssim"] < 1


def test_classification_scores_and_confusion():
    from tessera.tasks.evaluation.latent_metrics import classification_scores

    labels = np.array([0, 0, 1, 1, 2, -1])
    pred = np.array([0, 1, 1, 1, 2, 0])
    scores, matrix = classification_scores(labels, pred, 4)
    assert scores["accuracy"] == pytest.approx(0.8)  # the unlabelled tile is left out
    assert scores["majority_accuracy"] == pytest.approx(0.4)
    assert scores["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    # F1 per class: 2/3, 0.8, 1 (class 3 never occurs, so it is not averaged in)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
