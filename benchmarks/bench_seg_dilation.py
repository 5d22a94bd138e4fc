"""Does the dilated context module help? Test Dice of seg_ae with and without it. Not a test.

For one experiment of ``params.yaml`` (default ``landsat8-seg_ae``) this trains the model as
configured and again with ``dilations: [1]`` on the same budget, and fits a per-pixel random
forest on band values (the brightness baseline). All three are scored with the same Dice
(summed over the held-out test split, per class, then averaged over the classes present).

Usage: ``python benchmarks/bench_seg_dilation.py [--experiment NAME] [--out DIR]``.
Prints one line per model, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import yaml
from sklearn.ensemble import RandomForestClassifier

from tessera.flows.config import TesseraParams
from tessera.flows.experiments import resolve_experiment
from tessera.models.data import TileDataset
from tessera.models.train import fit


def pixels(ds: TileDataset, max_pixels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labelled valid pixels of a dataset as (N, C) band values and (N,) classes."""
    batch = ds.__getitems__(list(range(len(ds))))
    img = batch["image"].numpy().transpose(0, 2, 3, 1).reshape(-1, batch["image"].shape[1])
    lab = batch["label"].numpy().reshape(-1)
    keep = (lab != 255) & batch["valid"].numpy().reshape(-1)
    x, y = img[keep], lab[keep]
    if len(y) > max_pixels:
        pick = np.random.default_rng(seed).choice(len(y), max_pixels, replace=False)
        x, y = x[pick], y[pick]
    return x, y


def dice(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over present classes of 2|P∩T| / (|P| + |T|), summed over all pixels."""
    scores = []
    for c in range(k):
        p, t = pred == c, truth == c
        total = p.sum() + t.sum()
        if total:
            scores.append(2 * (p & t).sum() / total)
    return float(np.mean(scores))


def random_forest_dice(store: str, sources: list[str], k: int) -> float:
    train = TileDataset(store, sources, ["train"])
    test = TileDataset(store, sources, ["test"])
    x, y = pixels(train, 200_000, 0)
    rf = RandomForestClassifier(100, max_depth=16, n_jobs=-1, random_state=0).fit(x, y)
    xt, yt = pixels(test, 10**9, 0)
    return dice(rf.predict(xt), yt, k)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="landsat8-seg_ae")
    ap.add_argument("--out", default="outputs/bench/seg_dilation")
    args = ap.parse_args()
    params = TesseraParams.model_validate(yaml.safe_load(Path("params.yaml").read_text()))
    start = time.perf_counter()
    results = {}
    for tag, dilations in (("dilated", None), ("no_context", [1])):
        run = resolve_experiment(params, args.experiment).run
        model = dict(run.model, dilations=dilations or run.model["dilations"])
        cfg = run.model_copy(
            update={"model": model, "out_dir": f"{args.out}/{tag}", "tracking_uri": None}
        )
        summary = fit(cfg)
        assert summary is not None
        results[tag] = summary["test_metrics"]["test_dice"]
        print(f"{tag:>10} dilations={model['dilations']}: test Dice {results[tag]:.4f}")
    k = len(summary["data"]["class_names"])
    results["random_forest"] = random_forest_dice(run.store, run.dataset.sources, k)
    print(f"{'random forest':>10} on band values: test Dice {results['random_forest']:.4f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"dilated / no-context Dice ratio {results['dilated'] / results['no_context']:.3f}; "
        f"wall {time.perf_counter() - start:.0f} s, peak RSS {peak:.0f} MiB"
    )
    print(
        json.dumps({"experiment": args.experiment, **{k: round(v, 4) for k, v in results.items()}})
    )


if __name__ == "__main__":
    main()
