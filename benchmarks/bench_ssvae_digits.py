"""Semi-supervised VAE (M2) and latent clustering on scikit-learn's digits. Not a test.

- Fixed stratified test split (30 %, random_state=0); 100 labels (10 per class, seed 0) from
  the training part, the rest of it unlabelled.
- ``ssvae_accuracy``: the M2 classifier q(y|x) on the test split.
- ``labels_only_accuracy``: the same classifier architecture trained on the 100 labels alone,
  for the same number of optimiser steps.
- ``latent_nmi``/``latent_ari``: k-means (k=10, k-means++, n_init=4, random_state=0) on the
  posterior means μ of a ``vae`` trained without labels on all 1,797 digits, with the DEC
  clustering regulariser (centroids seeded by k-means on μ half-way); ``raw_nmi``/``raw_ari``:
  the same k-means on raw pixels. ``vade_nmi``/``vade_ari``: the same k-means on μ of a
  ``vae`` with the VaDE mixture-of-Gaussians prior instead of DEC (5 latents, 200 epochs, the
  mixture seeded after 20 on the aggregate posterior); ``vade_mixture_nmi``: the mixture's
  own assignment argmax_c q(c|μ). ``ssvae_latent_nmi``/``_ari``: k-means on the ssvae's
  posterior mean of its class latent, E[y] = q(y|x) (this one has seen the 100 labels).

Targets: ssvae ≥ labels-only + 5 points; vade NMI ≥ 0.85. Ends with one JSON line.
Also draws ``accuracy_curve.png`` (``--out``): test accuracy of both classifiers against
optimiser steps. Usage: ``python benchmarks/bench_ssvae_digits.py [--epochs N] [--seed S]
[--no-clustering]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

from tessera.models.kinds import ClusterReg
from tessera.models.trainers import SSVAETask, VAETask
from tessera.models.vae_nets import TileClassifier

WIDTHS = [32, 64, 128]


def samples(x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Digits as tile-store-like sample dicts (image 1×8×8 in [0, 1], valid mask, target)."""
    img = torch.from_numpy(x.reshape(-1, 1, 8, 8) / 16.0).float()
    return [
        {"image": img[i], "valid": torch.ones(8, 8, dtype=torch.bool), "target": int(y[i])}
        for i in range(len(x))
    ]


def trainer(epochs: int, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        callbacks=callbacks,
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=True,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def kmeans_scores(feats: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    pred = KMeans(10, init="k-means++", n_init=4, random_state=0).fit_predict(feats)
    return normalized_mutual_info_score(y, pred), adjusted_rand_score(y, pred)


def accuracy(clf: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    clf.eval()
    with torch.no_grad():
        return float((clf(x).argmax(1).numpy() == y).mean())


class AccuracyCurve(pl.Callback):
    """Test accuracy of a module's classifier after every ``every`` epochs (the curves of the
    ssvae and the labels-only classifier, drawn against optimiser steps)."""

    def __init__(self, pick: str, x: torch.Tensor, y: np.ndarray, every: int) -> None:
        self.pick, self.x, self.y, self.every = pick, x, y, every
        self.points: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0 or trainer.current_epoch == 0:
            clf = getattr(module, self.pick)
            self.points.append((trainer.global_step, accuracy(clf, self.x, self.y)))
            clf.train()


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    """Test accuracy against optimiser steps, one line per model, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name)
    ax.set(xlabel="optimiser steps", ylabel="test accuracy (digits, 100 labels)")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def train_ssvae(
    labelled: list, unlabelled: list, epochs: int, args: argparse.Namespace, curve: pl.Callback
) -> SSVAETask:
    m2 = SSVAETask(
        in_channels=1,
        image_size=8,
        num_classes=10,
        latent_dim=args.ssvae_latent,
        widths=WIDTHS,
        rec_loss="bce",
        alpha=args.alpha,
        dropout=0.2,
        lr=1e-3,
    )
    data = unlabelled + labelled * args.repeat  # labelled tiles oversampled into every batch
    trainer(epochs, [curve]).fit(m2, DataLoader(data, batch_size=64, shuffle=True))
    return m2


def train_vae(
    everything: list, epochs: int, reg: ClusterReg, weight: float, latent: int, warmup: int
) -> VAETask:
    vae = VAETask(
        in_channels=1,
        image_size=8,
        latent_dim=latent,
        widths=WIDTHS,
        rec_loss="bce",
        cluster_reg=reg if weight > 0 else "none",
        n_clusters=10,
        cluster_weight=weight,
        cluster_warmup_epochs=warmup,
    )
    trainer(epochs).fit(vae, DataLoader(everything, batch_size=64, shuffle=True))
    return vae


class LabelsOnly(pl.LightningModule):
    """The M2 classifier's architecture trained with cross-entropy on labelled tiles only."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TileClassifier(1, 10, WIDTHS, dropout=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self(batch["image"]), batch["target"])

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60, help="ssvae and vae epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=126.0, help="ssvae α (Kingma: 0.1·N)")
    ap.add_argument("--repeat", type=int, default=4, help="labelled tiles' oversampling")
    ap.add_argument("--ssvae-latent", type=int, default=4)
    ap.add_argument("--vae-latent", type=int, default=10)
    ap.add_argument("--dec-weight", type=float, default=100.0, help="0: no DEC regulariser")
    ap.add_argument("--vade-weight", type=float, default=1.0, help="mixture prior's KL weight")
    ap.add_argument("--vade-epochs", type=int, default=200)
    ap.add_argument("--vade-latent", type=int, default=5)
    ap.add_argument("--vade-warmup", type=int, default=20, help="plain-VAE epochs before seeding")
    ap.add_argument("--curve-every", type=int, default=5, help="epochs between curve points")
    ap.add_argument("--no-clustering", action="store_true", help="the ssvae comparison only")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/ssvae_digits"))
    args = ap.parse_args()
    start = time.perf_counter()
    pl.seed_everything(args.seed, verbose=False)
    x, y = load_digits(return_X_y=True)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=y, random_state=0
    )
    rng = np.random.default_rng(args.seed)
    lab_idx = np.concatenate(
        [rng.choice(idx_train[y[idx_train] == c], 10, replace=False) for c in range(10)]
    )
    unl_idx = np.setdiff1d(idx_train, lab_idx)
    labelled = samples(x[lab_idx], y[lab_idx])
    unlabelled = [dict(s, target=-1) for s in samples(x[unl_idx], y[unl_idx])]
    x_test = torch.from_numpy(x[idx_test].reshape(-1, 1, 8, 8) / 16.0).float()

    y_test = y[idx_test]
    m2_curve = AccuracyCurve("classifier", x_test, y_test, args.curve_every)
    m2 = train_ssvae(labelled, unlabelled, args.epochs, args, m2_curve)
    ssvae_acc = accuracy(m2.classifier, x_test, y_test)
    steps = args.epochs * int(np.ceil((len(unlabelled) + args.repeat * len(labelled)) / 64))

    pl.seed_everything(args.seed, verbose=False)
    base = LabelsOnly()
    base_epochs = max(1, steps // int(np.ceil(len(labelled) / 64)))  # same optimiser steps
    every = max(1, args.curve_every * base_epochs // args.epochs)  # curve points at equal steps
    base_curve = AccuracyCurve("net", x_test, y_test, every)
    trainer(base_epochs, [base_curve]).fit(base, DataLoader(labelled, batch_size=64, shuffle=True))
    base_acc = accuracy(base.net, x_test, y_test)
    curve_png = args.out / "accuracy_curve.png"
    plot_curves({"ssvae (M2)": m2_curve.points, "labels only": base_curve.points}, curve_png)
    for name, curve in (("ssvae", m2_curve), ("labels-only", base_curve)):
        print(f"{name} curve (step, accuracy):", [(k, round(a, 4)) for k, a in curve.points])
    print(f"accuracy curves: {curve_png}")
    gain = 100 * (ssvae_acc - base_acc)
    print(
        f"ssvae accuracy {ssvae_acc:.3f} vs labels-only {base_acc:.3f}: "
        f"gain {gain:+.1f} points, ratio {ssvae_acc / base_acc:.3f} (target: gain >= +5)"
    )
    result = {"ssvae_accuracy": ssvae_acc, "labels_only_accuracy": base_acc}
    if not args.no_clustering:
        result |= clustering(args, x, y, m2)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall {time.perf_counter() - start:.0f} s, peak RSS {peak_mib:.0f} MiB")
    print(json.dumps({key: round(value, 4) for key, value in result.items()}))


def clustering(
    args: argparse.Namespace, x: np.ndarray, y: np.ndarray, m2: SSVAETask
) -> dict[str, float]:
    """k-means scores on the latents of the DEC and VaDE VAEs, of the ssvae and of raw pixels."""
    x_all = torch.from_numpy(x.reshape(-1, 1, 8, 8) / 16.0).float()
    m2.eval()
    with torch.no_grad():  # the M2 posterior means of both latents: E[y] = q(y|x), E[z]
        q = torch.softmax(m2(x_all), 1)
        mu_z = m2.encoder(x_all, q)[0]
    m2_nmi, m2_ari = kmeans_scores(q.numpy(), y)

    pl.seed_everything(args.seed, verbose=False)
    vae = train_vae(
        samples(x, y), args.epochs, "dec", args.dec_weight, args.vae_latent, args.epochs // 2
    )
    vae.eval()
    with torch.no_grad():
        mu = vae.encode(x_all)[0].numpy()
    vae_nmi, vae_ari = kmeans_scores(mu, y)

    pl.seed_everything(args.seed, verbose=False)
    vade = train_vae(
        samples(x, y),
        args.vade_epochs,
        "vade",
        args.vade_weight,
        args.vade_latent,
        args.vade_warmup,
    )
    vade.eval()
    with torch.no_grad():
        mu_v = vade.encode(x_all)[0]
        own = vade.mixture.responsibilities(mu_v).argmax(1).numpy() if vade.mixture else None
    vade_nmi, vade_ari = kmeans_scores(mu_v.numpy(), y)
    mix_nmi = normalized_mutual_info_score(y, own) if own is not None else float("nan")
    raw_nmi, raw_ari = kmeans_scores(x, y)
    zy_nmi, _ = kmeans_scores(np.concatenate([q.numpy(), mu_z.numpy()], 1), y)

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
        "(target NMI >= 0.85)"
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
    }


if __name__ == "__main__":
    main()
