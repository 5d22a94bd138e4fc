"""Does seg_ae segment better than what a user would train instead? Not a test.

For each segmentation experiment of ``params.yaml`` (Landsat 8 BQA classes, MNI152 tissue),
on the same tiles, split and optimiser-step budget, in one run:

- ``seg_ae`` as configured (dilated context module);
- its undilated twin (``dilations: [1]``);
- MONAI's ``UNet`` (channels 16-32-64-128, strides 2-2-2, two residual units: the MONAI
  tutorials' 2-D U-Net), trained with the same Dice + cross-entropy loss, optimiser, learning
  rate, schedule, gradient-norm bound, batch size, dihedral augmentation and number of
  optimiser steps as seg_ae, keeping the weights of its best validation Dice;
- the per-pixel random forest on band values that ``tessera evaluate`` reports as baseline;
- a pure per-pixel MLP (1×1 convolutions) under seg_ae's training (``mlp_dice``): if it cannot
  reach the forest either, the gap is the training's (normalisation, loss, schedule), not the
  data's;
- with ``--converged``: seg_ae with a per-pixel path (``pixel_path_dice``) and an MLP fitted to
  convergence on the forest's own pixels (``mlp_converged_dice``): how far training alone goes.

Every model is scored by the same mean test Dice over the classes (pixel counts pooled over
the held-out test split). Usage, from the project root after ``tessera tile``:
``python benchmarks/bench_seg_quality.py [--experiment NAME ...] [--out DIR]``. Prints a line
per model and one JSON line per dataset; the target is seg_ae above all three (ratios > 1).
``--seeds 1 2`` also trains seg_ae and its undilated twin again under those training seeds
(same tiles and split) and adds each one's Dice per seed, mean and spread: whether a gap
between the two is larger than what the seed alone moves.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from tessera.flows.settings.experiments import resolve_experiment
from tessera.flows.settings.schema import TesseraParams
from tessera.models.data.augment import augment_batch
from tessera.models.data.tiles import TileDataset, collate_batch
from tessera.models.run.fit import fit
from tessera.models.run.run_config import RunConfig
from tessera.models.scoring.baselines import fitted_forest_scores
from tessera.models.scoring.image_metrics import SegmentationScores
from tessera.models.scoring.losses import MaskedDiceCELoss
from tessera.tasks.store.format import IGNORE

EXPERIMENTS = ("landsat8-seg_ae", "mni152-seg_ae")


def train_seg_ae(run: RunConfig, out: str, **changes: Any) -> dict[str, Any]:
    """seg_ae trained by ``tessera.models.run.fit`` (best checkpoint by the run's monitor), with
    ``changes`` to its arguments."""
    model = dict(run.model, **changes)
    cfg = run.model_copy(update={"model": model, "out_dir": out, "tracking_uri": None})
    start = time.perf_counter()
    summary = fit(cfg)
    assert summary is not None
    return {
        "dice": summary["test_metrics"]["test_dice"],
        "steps": summary["optimizer_steps"],
        "wall_s": time.perf_counter() - start,
    }


@torch.no_grad()
def test_dice(net: torch.nn.Module, ds: TileDataset, k: int) -> float:
    """Mean Dice over the classes present, pixel counts pooled over ``ds``."""
    net.eval()
    scores = SegmentationScores(k)
    for start in range(0, len(ds), 32):
        b = collate_batch(ds.__getitems__(list(range(start, min(start + 32, len(ds))))))
        if b["label"] is None:
            continue
        known = b["valid"] & (b["label"] != IGNORE)
        scores.update(net(b["image"]).argmax(1), torch.where(known, b["label"], IGNORE))
    return scores.scores()["dice_mean"]


def unet(c: int, k: int) -> torch.nn.Module:
    """MONAI's UNet of the tutorials (channels 16-32-64-128, strides 2-2-2, 2 residual units)."""
    from monai.networks.nets import UNet

    return UNet(2, c, k, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)


def per_pixel_mlp(c: int, k: int, width: int = 64) -> torch.nn.Module:
    """A pure per-pixel MLP (1×1 convolutions, two hidden layers of ``width``): what the
    forest sees, each pixel's band values alone, and nothing of its neighbours."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(c, width, 1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(width, k, 1),
    )


def train_net(
    make: Any, run: RunConfig, datasets: dict[str, TileDataset], k: int, steps: int
) -> dict[str, Any]:
    """``make(channels, classes)`` trained on seg_ae's budget: same loss, optimiser, schedule,
    gradient bound, batches and steps, keeping the weights of the best validation Dice."""
    start = time.perf_counter()
    seed, hp = run.trainer.seed, run.model
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    c = datasets["train"].__getitems__([0])["image"].shape[1]
    net = make(c, k)
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"], weight_decay=hp.get("weight_decay", 0))
    sched: Any = None
    if hp.get("lr_schedule") == "one_cycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp["lr"], total_steps=steps)
    elif hp.get("lr_schedule") == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = MaskedDiceCELoss(k)
    train, bs = datasets["train"], run.loader.batch_size
    per_epoch = max(1, len(train) // bs)
    best, best_state, done = -1.0, None, 0
    while done < steps:
        net.train()
        order = torch.randperm(len(train), generator=g).tolist()
        for i in range(per_epoch):
            b = collate_batch(train.__getitems__(order[i * bs : (i + 1) * bs]))
            if run.dataset.augment:
                b = augment_batch(b, g)
            label = torch.where(b["valid"], b["label"], IGNORE)
            loss = loss_fn(net(b["image"]), label)
            opt.zero_grad()
            loss.backward()
            if run.trainer.gradient_clip_val is not None:  # the bound seg_ae trains under
                torch.nn.utils.clip_grad_norm_(net.parameters(), run.trainer.gradient_clip_val)
            opt.step()
            if sched is not None:
                sched.step()
            done += 1
            if done == steps:
                break
        val = test_dice(net, datasets["val"], k)
        if val > best:
            best, best_state = val, {n: t.clone() for n, t in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    dice = test_dice(net, datasets["test"], k)
    return {"dice": dice, "steps": done, "wall_s": time.perf_counter() - start}


def seed_spread(
    run: RunConfig, out: Path, seeds: list[int], first: dict[str, float]
) -> dict[str, Any]:
    """seg_ae and its undilated twin under more training seeds: Dice per seed, mean, stdev."""
    dice = {name: [value] for name, value in first.items()}
    for seed in seeds:
        reseeded = run.model_copy(update={"trainer": run.trainer.model_copy(update={"seed": seed})})
        dice["seg_ae"].append(train_seg_ae(reseeded, str(out / f"seg_ae_seed{seed}"))["dice"])
        flat = train_seg_ae(reseeded, str(out / f"undilated_seed{seed}"), dilations=[1])
        dice["undilated"].append(flat["dice"])
    line: dict[str, Any] = {"seeds": [run.trainer.seed, *seeds]}
    for name, values in dice.items():
        mean, spread = statistics.mean(values), statistics.stdev(values)
        print(f"{name:>11} over seeds {line['seeds']}: Dice {[round(v, 4) for v in values]}, "
              f"mean {mean:.4f} ± {spread:.4f}")  # fmt: skip
        line |= {f"{name}_dice_seeds": [round(v, 4) for v in values]}
        line |= {f"{name}_dice_mean": round(mean, 4), f"{name}_dice_stdev": round(spread, 4)}
    return line


def converged_peers(
    run: RunConfig, ds: dict[str, TileDataset], k: int, out: Path
) -> dict[str, Any]:
    """Where the per-pixel view can go: seg_ae with a per-pixel path (``pixel_path: 32``) on
    the same budget, and scikit-learn's MLP (two hidden layers of 64, cross-entropy, Adam,
    300 epochs) fitted to convergence on the forest's own 60,000 training pixels."""
    from sklearn.neural_network import MLPClassifier

    from tessera.models.scoring.baselines import pixel_classifier_scores

    path = train_seg_ae(run, str(out / "pixel_path"), pixel_path=32)
    start = time.perf_counter()
    mlp = MLPClassifier((64, 64), max_iter=300, random_state=run.trainer.seed)
    done = pixel_classifier_scores(mlp, ds["train"], ds["test"], k, run.trainer.seed)
    wall = time.perf_counter() - start
    print(f"seg_ae + pixel path: {path['dice']:.4f}; converged pixel MLP: {done['dice_mean']:.4f}")
    return {
        "pixel_path_dice": round(path["dice"], 4),
        "pixel_path_wall_s": round(path["wall_s"], 1),
        "mlp_converged_dice": round(done["dice_mean"], 4),
        "mlp_converged_wall_s": round(wall, 1),
    }


def bench(
    params: TesseraParams, experiment: str, out: Path, seeds: list[int], converged: bool = False
) -> dict[str, Any]:
    run = resolve_experiment(params, experiment).run
    sources = run.dataset.sources
    splits = ("train", "val", "test")
    ds = {s: TileDataset(run.store, sources, [s], run.dataset.normalisation) for s in splits}
    k = len(ds["train"].store.info.sources[sources[0]].class_names)
    seg = train_seg_ae(run, str(out / experiment / "seg_ae"))
    flat = train_seg_ae(run, str(out / experiment / "undilated"), dilations=[1])
    unet_run = train_net(unet, run, ds, k, seg["steps"])
    mlp = train_net(per_pixel_mlp, run, ds, k, seg["steps"])
    start = time.perf_counter()
    rf = fitted_forest_scores(ds["train"], ds["test"], k, run.trainer.seed)[0]["dice_mean"]
    rf_wall = time.perf_counter() - start
    extra: dict[str, Any] = {}
    if converged:
        extra = converged_peers(run, ds, k, out / experiment)
    for name, r in (("seg_ae", seg), ("undilated", flat), ("MONAI UNet", unet_run), ("MLP", mlp)):
        print(f"{experiment} {name:>11}: test Dice {r['dice']:.4f} ({r['steps']} steps, "
              f"{r['wall_s']:.0f} s)")  # fmt: skip
    print(f"{experiment} random forest: test Dice {rf:.4f} ({rf_wall:.0f} s)")
    firsts = {"seg_ae": seg["dice"], "undilated": flat["dice"]}
    spread = seed_spread(run, out / experiment, seeds, firsts) if seeds else {}
    return (
        {
            "dataset": experiment.split("-")[0],
            "seg_ae_dice": round(seg["dice"], 4),
            "undilated_dice": round(flat["dice"], 4),
            "unet_dice": round(unet_run["dice"], 4),
            "mlp_dice": round(mlp["dice"], 4),
            "rf_dice": round(rf, 4),
            "steps": seg["steps"],
            "seg_ae_wall_s": round(seg["wall_s"], 1),
            "undilated_wall_s": round(flat["wall_s"], 1),
            "unet_wall_s": round(unet_run["wall_s"], 1),
            "mlp_wall_s": round(mlp["wall_s"], 1),
            "rf_wall_s": round(rf_wall, 1),
            "ratio_vs_rf": round(seg["dice"] / rf, 4),
            "ratio_vs_unet": round(seg["dice"] / unet_run["dice"], 4),
            "mlp_ratio_vs_rf": round(mlp["dice"] / rf, 4),
            "ratio_vs_undilated": round(seg["dice"] / flat["dice"], 4),
        }
        | extra
        | spread
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", nargs="*", default=list(EXPERIMENTS))
    ap.add_argument("--out", default="outputs/bench/seg_quality")
    ap.add_argument("--seeds", type=int, nargs="*", default=[], help="more training seeds")
    ap.add_argument(
        "--converged", action="store_true", help="also seg_ae + pixel path, converged MLP"
    )
    args = ap.parse_args()
    params = TesseraParams.model_validate(yaml.safe_load(Path("params.yaml").read_text()))
    lines = [
        bench(params, exp, Path(args.out), args.seeds, args.converged) for exp in args.experiment
    ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB; target: every ratio > 1 (seg_ae above each peer)")
    for line in lines:
        won = all(line[key] > 1 for key in ("ratio_vs_rf", "ratio_vs_unet", "ratio_vs_undilated"))
        print(json.dumps(line | {"peak_rss_mib": round(peak), "target_met": bool(won)}))


if __name__ == "__main__":
    main()
