"""The model ``tessera predict`` applies: from the registry or from a checkpoint, with its
descriptor, its lineage, and a batch predictor on the chosen device."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from tessera.models.descriptor import ModelDescriptor
from tessera.models.run.run_config import RunConfig
from tessera.tasks.prediction.predict_options import Device
from tessera.tasks.prediction.stitching import Predictor

MIN_BATCH = 2  # torch.export specialises a batch of one; pad a lone window to two


class ModelSource(BaseModel):
    """Where the model comes from: a registry URI, or a run's checkpoint."""

    ref: str
    tracking_uri: str | None = None
    run: RunConfig | None = None
    checkpoint: str | None = None
    clusters: str | None = None  # a checkpoint's evaluation clusters.json (latent-only models)
    contract: dict[str, Any] | None = None  # an MLM Item's bands, scaling, window and classes
    contract_from: str | None = None  # that Item's file


@dataclass
class AppliedModel:
    """A model ready to apply: its serving module, descriptor and lineage."""

    module: Any
    descriptor: ModelDescriptor
    name: str
    version: str
    ref: str
    tags: dict[str, str] = field(default_factory=dict)
    reconstruction: Any = None  # the per-pixel reconstruction module, where the model has one
    centroids: Any = None  # (k, D) k-means centroids of a latent-only model's evaluation

    def map_classes(self) -> list[str]:
        """What a map's values name: the model's classes, or the evaluation's clusters."""
        if self.descriptor.output == "latent_mean" and self.centroids is not None:
            return [f"cluster_{i}" for i in range(len(self.centroids))]
        return list(self.descriptor.class_names)

    def lineage(self) -> dict[str, str]:
        """What every output's metadata says of the model."""
        out = {"tessera_model": self.name, "tessera_model_version": self.version}
        out["tessera_model_ref"] = self.ref
        if "git_sha" in self.tags:
            out["tessera_git_sha"] = self.tags["git_sha"]
        return out


def checkpoint_model(run: RunConfig, checkpoint: Path, ref: str) -> AppliedModel:
    """The serving module of ``run``'s checkpoint and the descriptor its store gives it;
    its version names the checkpoint's content (``ckpt-<sha256 prefix>``)."""
    from tessera.models.checkpoint import load_checkpoint, model_descriptor

    loaded = load_checkpoint(checkpoint, run.model["type"], run.trainer.cpu_isa)
    module, descriptor = loaded.module, model_descriptor(loaded, run)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    return AppliedModel(
        module.serving_module(), descriptor, run.experiment, f"ckpt-{digest}", ref, {},
        module.reconstruction_module(),
    )  # fmt: skip


def resolve_device(device: Device) -> str:
    """``auto``: CUDA when present, else the CPU; ``cuda`` without one is refused."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device here")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def batch_predictor(
    model: AppliedModel, device: str, softmax: bool, reconstruction: bool = False
) -> Predictor:
    """Scores of a batch of normalised windows: float32 numpy in, float32 numpy out, run on
    ``device`` (bf16 autocast on CUDA); ``softmax`` over the class axis for class logits;
    with ``reconstruction``, the reconstruction's channels after the scores."""
    import torch

    def on_device(m: Any) -> Any:
        return m.to(device) if hasattr(m, "to") else m

    module = on_device(model.module)
    rec = on_device(model.reconstruction) if reconstruction else None
    centroids = model.centroids if model.descriptor.output == "latent_mean" else None

    def predict(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n < MIN_BATCH:
            x = np.concatenate([x, np.zeros((MIN_BATCH - n, *x.shape[1:]), x.dtype)])
        t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, device == "cuda"):
            y = module(t)
            if softmax:
                y = torch.softmax(y.float(), dim=1)
            if rec is not None:
                y = torch.cat([y.float(), rec(t).float()], dim=1)
        out = y[:n].float().cpu().numpy()
        if centroids is None:
            return out
        from tessera.tasks.evaluation.clusters import nearest  # μ → its cluster, one-hot

        return np.eye(len(centroids), dtype=np.float32)[nearest(out, centroids)]

    return predict
