"""Semi-supervised VAE (M2) and latent clustering on scikit-learn's digits. Not a test.

- Fixed stratified test split (30 %, random_state=0); 100 labels (10 per class, seed 0) from
  the training part, the rest of it unlabelled.
- ``ssvae_accuracy``: the M2 classifier q(y|x) on the test split.
- ``labels_only_accuracy``: the same classifier architecture trained on the 100 labels alone,
  for the same number of optimiser steps. ``--augment`` shifts every image of both by up to
  one pixel (the same augmentation on both sides).
- ``label_spreading_accuracy``: label spreading on a k-NN graph of the training pixels (same
  labels, same unlabelled pool), the classic semi-supervised reference.
- ``latent_nmi``/``latent_ari``: k-means (k=10, k-means++, n_init=4, random_state=0) on the
  posterior means μ of a ``vae`` trained without labels on all 1,797 digits, with the DEC
  clustering regulariser (centroids seeded by k-means on μ half-way); ``raw_nmi``/``raw_ari``:
  the same k-means on raw pixels; ``spectral_raw_nmi``: spectral clustering on raw pixels.
  ``m1_logistic_accuracy`` against ``raw_logistic_accuracy``: a logistic regression on the
  100 labels over that vae's μ (the M1 features of Kingma's M1+M2 stack) and over pixels.
  ``vade_nmi``/``vade_ari``: the same k-means on μ of a ``vae`` with the VaDE
  mixture-of-Gaussians prior instead of DEC (5 latents, 200 epochs, the mixture seeded after
  20 on the aggregate posterior); ``vade_mixture_nmi``: the mixture's own assignment
  argmax_c q(c|μ). ``ssvae_latent_nmi``/``_ari``: k-means on the ssvae's posterior mean of
  its class latent, E[y] = q(y|x) (this one has seen the 100 labels).
  ``spectral_latent_nmi``/``spectral_vade_nmi``: the spectral clustering of the reference on
  the DEC and VaDE μ: whether the latent holds the digits apart when the clusters need not
  be round.

Targets: the ssvae ≥ label spreading as the mean over ``--draws 5`` draws of the 100 labels,
and > labels-only in every draw (``*_mean``, ``*_sd``, ``met``); the vae latent's k-means NMI ≥
spectral clustering on raw pixels. Ends with one JSON line.
Draws (``--out``) ``accuracy_curve.png``: test accuracy of both classifiers against optimiser
steps, and ``latent_nmi_curve.png``: the DEC and VaDE latents' k-means NMI while they train,
against spectral clustering on pixels. Usage:
``python benchmarks/bench_ssvae_digits.py [--epochs N] [--seed S] [--augment]
[--no-clustering] [--draws 5]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.digits_models import (  # noqa: E402
    LabelsOnly,
    collate,
    kmeans_scores,
    latent_means,
    samples,
    train_ssvae,
    train_vae,
    trainer,
)
from benchmarks.digits_references import (  # noqa: E402
    label_spreading_accuracy,
    logistic_accuracy,
    spectral_nmi,
)
from benchmarks.learning_curves import (  # noqa: E402
    MetricCurve,
    accuracy,
    accuracy_curve,
    plot_curves,
)
from tessera.models.trainers import SSVAEModule  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60, help="ssvae and vae epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=126.0, help="ssvae α (Kingma: 0.1·N)")
    ap.add_argument("--repeat", type=int, default=4, help="labelled tiles' oversampling")
    ap.add_argument("--ssvae-latent", type=int, default=4)
    ap.add_argument("--augment", action="store_true", help="±1-px shifts for both classifiers")
    ap.add_argument("--vae-latent", type=int, default=10)
    ap.add_argument("--dec-weight", type=float, default=100.0, help="0: no DEC regulariser")
    ap.add_argument("--vade-weight", type=float, default=1.0, help="mixture prior's KL weight")
    ap.add_argument("--vade-epochs", type=int, default=200)
    ap.add_argument("--vade-latent", type=int, default=5)
    ap.add_argument("--vade-warmup", type=int, default=20, help="plain-VAE epochs before seeding")
    ap.add_argument("--curve-every", type=int, default=5, help="epochs between curve points")
    ap.add_argument("--no-clustering", action="store_true", help="the ssvae comparison only")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/ssvae_digits"))
    ap.add_argument(
        "--draws", type=int, default=1, help="draws of the 100 labels (seeds seed..seed+N-1)"
    )
    args = ap.parse_args()
    start = time.perf_counter()
    x, y = load_digits(return_X_y=True)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y, random_state=0
    )
    draws = [compare(args, x, y, idx_train, idx_test, args.seed + d) for d in range(args.draws)]
    result = dict(draws[0][0])
    if args.draws > 1:
        result = summarise([r for r, _ in draws])
    if not args.no_clustering:
        m2, lab_idx = draws[0][1]
        result |= clustering(args, x, y, m2, lab_idx, idx_test)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall {time.perf_counter() - start:.0f} s, peak RSS {peak_mib:.0f} MiB")
    print(json.dumps({key: round(value, 4) for key, value in result.items()}))


def summarise(draws: list[dict[str, float]]) -> dict[str, float]:
    """Mean and sample sd over the draws of each accuracy; the ssvae's margins over both
    references (the targets: >= label spreading on the mean, > labels-only in every draw)."""
    out: dict[str, float] = {"draws": float(len(draws))}
    for key in ("ssvae_accuracy", "label_spreading_accuracy", "labels_only_accuracy"):
        values = np.array([d[key] for d in draws])
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_sd"] = float(values.std(ddof=1))
    wins = sum(d["ssvae_accuracy"] > d["labels_only_accuracy"] for d in draws)
    out["draws_ssvae_beats_labels_only"] = float(wins)
    mean_ok = out["ssvae_accuracy_mean"] >= out["label_spreading_accuracy_mean"]
    out["met"] = float(mean_ok and wins == len(draws))
    print(
        f"{len(draws)} draws of 100 labels: ssvae {out['ssvae_accuracy_mean']:.3f} ± "
        f"{out['ssvae_accuracy_sd']:.3f}, label spreading "
        f"{out['label_spreading_accuracy_mean']:.3f} ± {out['label_spreading_accuracy_sd']:.3f}, "
        f"labels only {out['labels_only_accuracy_mean']:.3f} ± "
        f"{out['labels_only_accuracy_sd']:.3f}; ssvae beats labels only in {wins} of "
        f"{len(draws)} (target: mean >= label spreading, and every draw)"
    )
    return out


def compare(
    args: argparse.Namespace,
    x: np.ndarray,
    y: np.ndarray,
    idx_train: np.ndarray,
    idx_test: np.ndarray,
    seed: int,
) -> tuple[dict[str, float], tuple[SSVAEModule, np.ndarray]]:
    """One draw of the 100 labels (10 per class, ``seed``): the ssvae, the labels-only
    classifier and label spreading on it; returns the accuracies, the ssvae and the labels."""
    pl.seed_everything(seed, verbose=False)
    rng = np.random.default_rng(seed)
    lab_idx = np.concatenate(
        [rng.choice(idx_train[y[idx_train] == c], 10, replace=False) for c in range(10)]
    )
    unl_idx = np.setdiff1d(idx_train, lab_idx)
    labelled = samples(x[lab_idx], y[lab_idx])
    unlabelled = [dict(s, target=-1) for s in samples(x[unl_idx], y[unl_idx])]
    x_test = torch.from_numpy(x[idx_test].reshape(-1, 1, 8, 8) / 16.0).float()

    y_test = y[idx_test]
    m2_curve = accuracy_curve("classifier", x_test, y_test, args.curve_every)
    m2 = train_ssvae(labelled, unlabelled, args.epochs, args, m2_curve)
    ssvae_acc = accuracy(m2.classifier, x_test, y_test)
    steps = args.epochs * int(np.ceil((len(unlabelled) + args.repeat * len(labelled)) / 64))

    pl.seed_everything(seed, verbose=False)
    base = LabelsOnly()
    base_epochs = max(1, steps // int(np.ceil(len(labelled) / 64)))  # same optimiser steps
    every = max(1, args.curve_every * base_epochs // args.epochs)  # curve points at equal steps
    base_curve = accuracy_curve("net", x_test, y_test, every)
    loader = DataLoader(labelled, batch_size=64, shuffle=True, collate_fn=collate(args))
    trainer(base_epochs, [base_curve]).fit(base, loader)
    base_acc = accuracy(base.net, x_test, y_test)
    suffix = "" if seed == args.seed else f"_seed{seed}"
    curve_png = args.out / f"accuracy_curve{suffix}.png"
    shifts = " (±1-px shifts)" if args.augment else ""
    plot_curves(
        {f"ssvae (M2){shifts}": m2_curve.points, f"labels only{shifts}": base_curve.points},
        "test accuracy (digits, 100 labels)",
        curve_png,
    )
    for name, curve in (("ssvae", m2_curve), ("labels-only", base_curve)):
        print(f"{name} curve (step, accuracy):", [(k, round(a, 4)) for k, a in curve.points])
    print(f"accuracy curves: {curve_png}")
    spreading = label_spreading_accuracy(x / 16.0, y, idx_train, lab_idx, idx_test)
    gain = 100 * (ssvae_acc - base_acc)
    print(
        f"labels seed {seed}: ssvae accuracy {ssvae_acc:.3f} vs labels-only {base_acc:.3f}"
        f"{shifts}: gain {gain:+.1f} points, ratio {ssvae_acc / base_acc:.3f}; "
        f"label spreading on a k-NN graph of the pixels {spreading:.3f}"
    )
    result = {
        "ssvae_accuracy": ssvae_acc,
        "labels_only_accuracy": base_acc,
        "label_spreading_accuracy": spreading,
    }
    return result, (m2, lab_idx)


def clustering(
    args: argparse.Namespace,
    x: np.ndarray,
    y: np.ndarray,
    m2: SSVAEModule,
    lab_idx: np.ndarray,
    idx_test: np.ndarray,
) -> dict[str, float]:
    """k-means scores on the latents of the DEC and VaDE VAEs, of the ssvae and of raw pixels;
    the references: spectral clustering, and logistic regression on μ against on pixels."""
    x_all = torch.from_numpy(x.reshape(-1, 1, 8, 8) / 16.0).float()
    m2.eval()
    with torch.no_grad():  # the M2 posterior means of both latents: E[y] = q(y|x), E[z]
        q = torch.softmax(m2(x_all), 1)
        mu_z = m2.encoder(x_all, q)[0]
    m2_nmi, m2_ari = kmeans_scores(q.numpy(), y)

    pl.seed_everything(args.seed, verbose=False)
    dec_curve = MetricCurve(
        lambda vae: kmeans_scores(latent_means(vae, x_all).numpy(), y)[0], args.curve_every
    )
    vae = train_vae(
        samples(x, y),
        args.epochs,
        "dec",
        args.dec_weight,
        args.vae_latent,
        args.epochs // 2,
        [dec_curve],
    )
    mu = latent_means(vae, x_all).numpy()
    vae_nmi, vae_ari = kmeans_scores(mu, y)
    m1_acc = logistic_accuracy(mu, y, lab_idx, idx_test)
    raw_acc = logistic_accuracy(x / 16.0, y, lab_idx, idx_test)

    pl.seed_everything(args.seed, verbose=False)
    nmi_curve = MetricCurve(
        lambda vade: kmeans_scores(latent_means(vade, x_all).numpy(), y)[0], args.curve_every * 2
    )
    vade = train_vae(
        samples(x, y),
        args.vade_epochs,
        "vade",
        args.vade_weight,
        args.vade_latent,
        args.vade_warmup,
        [nmi_curve],
    )
    mu_v = latent_means(vade, x_all)
    with torch.no_grad():
        own = vade.mixture.responsibilities(mu_v).argmax(1).numpy() if vade.mixture else None
    vade_nmi, vade_ari = kmeans_scores(mu_v.numpy(), y)
    mix_nmi = normalized_mutual_info_score(y, own) if own is not None else float("nan")
    raw_nmi, raw_ari = kmeans_scores(x, y)
    spectral = spectral_nmi(x / 16.0, y)
    # the limit: the same spectral clustering on the latents separates the digits as well as
    # on pixels or better, so what k-means misses is the clusters' shape, not the information
    spectral_mu, spectral_vade = spectral_nmi(mu, y), spectral_nmi(mu_v.numpy(), y)
    zy_nmi, _ = kmeans_scores(np.concatenate([q.numpy(), mu_z.numpy()], 1), y)
    nmi_png = args.out / "latent_nmi_curve.png"
    plot_curves(
        {"VaDE latent, k-means": nmi_curve.points, "DEC latent, k-means": dec_curve.points},
        "NMI (digits)",
        nmi_png,
        {"spectral on pixels": spectral},
    )
    print("vade NMI curve (step, NMI):", [(k, round(a, 4)) for k, a in nmi_curve.points])
    print("dec NMI curve (step, NMI):", [(k, round(a, 4)) for k, a in dec_curve.points])
    print(f"latent NMI curves: {nmi_png}")

    print(f"k-means NMI/ARI, raw pixels: {raw_nmi:.3f}/{raw_ari:.3f}")
    print(
        f"  vae mu (unsupervised{', DEC' if args.dec_weight > 0 else ''}): "
        f"{vae_nmi:.3f}/{vae_ari:.3f}, ratio to raw {vae_nmi / raw_nmi:.2f}"
    )
    print(
        f"  ssvae E[y]=q(y|x): {m2_nmi:.3f}/{m2_ari:.3f}, ratio to raw {m2_nmi / raw_nmi:.2f}; "
        f"ssvae [E[y], E[z]]: NMI {zy_nmi:.3f}"
    )
    print(
        f"  vae mu (unsupervised, VaDE prior): {vade_nmi:.3f}/{vade_ari:.3f}, ratio to raw "
        f"{vade_nmi / raw_nmi:.2f}; the mixture's own assignment NMI {mix_nmi:.3f} "
        f"(target NMI >= 0.85); spectral clustering on raw pixels NMI {spectral:.3f}"
    )
    print(
        f"spectral clustering on the latents: DEC vae mu {spectral_mu:.3f}, VaDE mu "
        f"{spectral_vade:.3f} (k-means on them: {vae_nmi:.3f}, {vade_nmi:.3f})"
    )
    print(
        f"logistic regression on the 100 labels: vae mu (M1 features) {m1_acc:.3f}, "
        f"raw pixels {raw_acc:.3f}"
    )
    return {
        "latent_nmi": vae_nmi,
        "latent_ari": vae_ari,
        "vade_nmi": vade_nmi,
        "vade_ari": vade_ari,
        "vade_mixture_nmi": mix_nmi,
        "ssvae_latent_nmi": m2_nmi,
        "ssvae_latent_ari": m2_ari,
        "raw_nmi": raw_nmi,
        "raw_ari": raw_ari,
        "spectral_raw_nmi": spectral,
        "spectral_latent_nmi": spectral_mu,
        "spectral_vade_nmi": spectral_vade,
        "m1_logistic_accuracy": m1_acc,
        "raw_logistic_accuracy": raw_acc,
    }


if __name__ == "__main__":
    main()
