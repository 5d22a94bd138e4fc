"""Inference over a split for evaluation: latents, contrastive views and image metrics.

Loads a trained checkpoint (``weights_only=True``), runs the model over the test tiles once and
returns per-tile arrays for the representation metrics in
:mod:`tessera.tasks.evaluation.latent_metrics`, plus the streamed reconstruction, segmentation and
classification figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tessera.models.checkpoint import load_checkpoint
from tessera.models.data.augment import dihedral
from tessera.models.data.datamodule import TileDataModule, tile_classes
from tessera.models.data.tiles import TileDataset, collate_batch
from tessera.models.nets.seg_nets import capacity_mode
from tessera.models.run.run_config import SUMMARY_FILE, RunConfig
from tessera.models.scoring.baselines import BaselineResults, TrainBudget, pooled_pixels
from tessera.models.scoring.diagnostics import active_units
from tessera.models.scoring.image_metrics import ReconstructionMeter, SegmentationScores
from tessera.tasks.store.format import IGNORE


@dataclass
class Inference:
    """What one pass over a split gives: one row per tile in every per-tile array."""

    model_type: str
    class_names: list[str]
    latents: np.ndarray
    view1: np.ndarray
    view2: np.ndarray
    targets: np.ndarray  # tile class, -1 where unknown
    metas: list[dict[str, Any]]
    metrics: dict[str, float]
    capacity_mode: str
    class_pred: np.ndarray | None = None
    kl_per_dim: np.ndarray | None = None
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    map_latents: np.ndarray | None = None  # every tile of the sources, for the cluster maps
    map_metas: list[dict[str, Any]] = field(default_factory=list)
    raw: np.ndarray | None = None  # the tiles' own pixels (pooled), for k-means on raw pixels
    baselines: BaselineResults = field(default_factory=BaselineResults)


def training_steps(config: RunConfig, checkpoint_steps: int) -> int:
    """The optimiser steps the whole training took (its summary), which a trained baseline
    gets too; the checkpoint's own step count where no summary is left (best.ckpt may come
    from an earlier epoch than the last)."""
    summary = Path(config.out_dir) / SUMMARY_FILE
    if summary.is_file():
        steps = json.loads(summary.read_text()).get("optimizer_steps")
        if isinstance(steps, int) and steps > 0:
            return steps
    return checkpoint_steps


def value_range(ds: TileDataset) -> float:
    """The widest band's min-to-max range in the dataset's normalised units (PSNR/SSIM range)."""
    idx = ds.store.index
    sources = sorted(set(idx["source"].to_numpy()[ds.indices]))
    if not sources:
        return 1.0
    src = ds.store.info.sources[sources[0]]
    spans = np.array([src.stats[b]["max"] - src.stats[b]["min"] for b in src.bands])
    if ds.scale is not None:
        spans = spans / ds.scale.flatten().numpy()
    return float(max(spans.max(), 1e-6))


def eval_dataset(dm: Any, splits: list[str], tile_class: str) -> TileDataset:
    """The splits' tiles with tile classes for judging latents (``majority`` by default)."""
    ds: TileDataset = dm.datasets["train"]
    idx = ds.store.index
    how = dm.hparams["tile_class"] if dm.hparams["tile_class"] != "none" else tile_class
    targets = tile_classes(
        idx["label_fractions"].tolist(),
        idx["has_label"].to_numpy(),
        how,  # type: ignore[arg-type]
        dm.hparams["presence_threshold"],
    )
    return TileDataset(ds.store, dm.hparams["sources"], splits, ds.normalisation, targets)


def augment_view(x: torch.Tensor, valid: torch.Tensor, noise: float, g: torch.Generator) -> Any:
    """A random dihedral transform of each tile plus Gaussian noise of std ``noise`` (valid px)."""
    ks = torch.randint(0, 4, (len(x),), generator=g).tolist()
    flips = torch.randint(0, 2, (len(x),), generator=g).bool().tolist()
    xs = torch.stack([dihedral(x[i], ks[i], flips[i]) for i in range(len(x))])
    vs = torch.stack([dihedral(valid[i], ks[i], flips[i]) for i in range(len(x))])
    eps = torch.randn(xs.shape, generator=g) * noise
    return torch.where(vs.unsqueeze(1), xs + eps, xs)


def _batches(ds: TileDataset, batch_size: int, desc: str, progress: bool) -> Any:
    """Batches of ``ds`` in order, with a progress bar."""
    for start in tqdm(range(0, len(ds), batch_size), desc=desc, disable=None if progress else True):
        yield collate_batch(ds.__getitems__(list(range(start, min(start + batch_size, len(ds))))))


class _Collector:
    """Streams a model's evaluation outputs over batches (see ``BaseModule.evaluate_batch``)."""

    def __init__(self, module: Any, data_range: float) -> None:
        self.module = module
        self.rec = ReconstructionMeter(data_range)
        k = module.segmentation_classes
        self.seg = SegmentationScores(k) if k else None
        self.lists: dict[str, list[torch.Tensor]] = {}
        self.examples: dict[str, np.ndarray] = {}

    def add(self, key: str, t: torch.Tensor) -> None:
        self.lists.setdefault(key, []).append(t.detach().cpu())

    def batch(self, b: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Reconstruction (and segmentation, class) of one batch; accumulates the metrics."""
        x, valid = b["image"], b["valid"]
        out = self.module.evaluate_batch(b)
        if self.seg is not None and "pred_map" in out:
            self.seg.update(out["pred_map"], torch.where(valid, b["label"], IGNORE))
        for key in ("class_pred", "kl", "mu"):
            if key in out:
                self.add(key, out[key])
        self.rec.update(out["rec"], x, valid)
        return out

    def keep_examples(self, b: dict[str, Any], out: dict[str, torch.Tensor], n: int) -> None:
        """The first ``n`` tiles' input, reconstruction, error (and label, prediction)."""
        if self.examples:
            return
        x = b["image"][:n]
        rec = out["rec"][:n]
        self.examples = {
            "input": x.numpy(),
            "reconstruction": rec.numpy(),
            "error": ((rec - x).abs().mean(1) * b["valid"][:n]).numpy(),
        }
        if "pred_map" in out and b["label"] is not None:
            self.examples["label"] = torch.where(b["valid"][:n], b["label"][:n], IGNORE).numpy()
            pred = torch.where(b["valid"][:n], out["pred_map"][:n], IGNORE)  # padding: blank
            self.examples["prediction"] = pred.numpy()


@dataclass(frozen=True)
class InferenceOptions:
    """What an evaluation's inference covers.

    Args:
        split: The split whose tiles are embedded and scored.
        tile_class: Tile labels where training used none: ``majority`` or ``presence``.
        noise: Noise std of the two augmented views.
        seed: Seed of the views and of the baselines.
        batch_size: Tiles per forward pass.
        n_examples: Tiles kept as examples for the plots.
        samples_per_class: Samples drawn per class from a generative model (0: none).
        map_splits: The splits whose tiles are embedded too (no metrics), for the cluster
            maps of whole scenes.
    """

    split: str = "test"
    tile_class: str = "majority"
    noise: float = 0.05
    seed: int = 0
    batch_size: int = 64
    n_examples: int = 6
    samples_per_class: int = 8
    map_splits: tuple[str, ...] = ("train", "val", "test")


@torch.no_grad()
def run_inference(
    config: RunConfig,
    checkpoint: Path,
    options: InferenceOptions | None = None,
    progress: bool = True,
) -> Inference:
    """Run the checkpoint over the options' split: latents, two augmented views, metrics,
    examples; and embed the tiles of its ``map_splits``."""
    o = options or InferenceOptions()
    loaded = load_checkpoint(checkpoint, config.model["type"], config.trainer.cpu_isa)
    module = loaded.module
    dm = TileDataModule.from_run(config)
    dm.setup("test")
    class_names = dm.info["class_names"]
    ds = eval_dataset(dm, [o.split], o.tile_class)
    if len(ds) == 0:
        raise ValueError(f"{config.store}: no {o.split} tiles for sources {config.dataset.sources}")
    torch.manual_seed(o.seed)
    g = torch.Generator().manual_seed(o.seed)
    col = _Collector(module, value_range(ds))
    metas: list[dict[str, Any]] = []
    for b in _batches(ds, o.batch_size, f"evaluate {config.experiment}", progress):
        x, y = b["image"], b["target"]
        out = col.batch(b)
        col.keep_examples(b, out, o.n_examples)
        col.add("latent", module.embed(x, y))
        col.add("view1", module.embed(augment_view(x, b["valid"], o.noise, g), y))
        col.add("view2", module.embed(augment_view(x, b["valid"], o.noise, g), y))
        col.add("target", y)
        col.add("raw", pooled_pixels(x))
        metas.extend(b["meta"])
    cat = {key: torch.cat(v) for key, v in col.lists.items()}
    metrics = {f"rec_{name}": v for name, v in col.rec.compute().items()}
    if col.seg is not None:
        metrics.update(col.seg.scores())
    latent_dim = cat["latent"].shape[1]
    kl_per_dim = None
    if "kl" in cat:
        kl_per_dim = cat["kl"].mean(0).numpy()
        metrics["kl_total"] = float(kl_per_dim.sum())
        metrics["active_units"] = float(active_units(cat["mu"]).sum())
        ratio = latent_dim / float(np.prod(x.shape[1:]))
    else:
        ratio = float(module.compression_ratio)
        metrics["active_units"] = float(active_units(cat["latent"]).sum())
    metrics["latent_dim"] = float(latent_dim)
    metrics["compression_ratio"] = ratio
    samples: dict[str, np.ndarray] = {}
    if o.samples_per_class:
        drawn = module.class_samples(o.samples_per_class, class_names)
        samples = {name: t.cpu().numpy() for name, t in drawn.items()}
    budget = TrainBudget(
        training_steps(config, loaded.steps), config.loader.batch_size,
        config.dataset.augment != "none", o.seed,
    )  # fmt: skip
    baselines = module.baselines(dm.datasets["train"], ds, budget)
    map_latents, map_metas = None, []
    if o.map_splits:
        everything = eval_dataset(dm, list(o.map_splits), o.tile_class)
        chunks = []
        for b in _batches(everything, o.batch_size, f"map {config.experiment}", progress):
            chunks.append(module.embed(b["image"], b["target"]))
            map_metas.extend(b["meta"])
        map_latents = torch.cat(chunks).numpy()
    return Inference(
        model_type=config.model["type"],
        class_names=class_names,
        latents=cat["latent"].numpy(),
        view1=cat["view1"].numpy(),
        view2=cat["view2"].numpy(),
        targets=cat["target"].numpy() if "target" in cat else np.full(len(ds), -1),
        metas=metas,
        metrics=metrics,
        capacity_mode=capacity_mode(ratio),
        class_pred=cat["class_pred"].numpy() if "class_pred" in cat else None,
        kl_per_dim=kl_per_dim,
        examples=col.examples,
        samples=samples,
        map_latents=map_latents,
        map_metas=map_metas,
        raw=cat["raw"].numpy(),
        baselines=baselines,
    )
