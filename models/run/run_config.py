"""Typed training configuration: trainer, loader, dataset and the resolved run config.

Model hyper-parameters are validated against the LightningModule's own constructor signature
(:func:`validate_model_params`, read from source by :mod:`tessera.models.arguments`), so there is
one list of them: the module's arguments.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from tessera.models.arguments import constructor_arguments
from tessera.models.data.normalisation import Normalisation
from tessera.models.kinds import Augment

SUMMARY_FILE = "train_summary.json"
RUN_FILE = "train_run.json"
"""What differs between two runs of the same training: wall time and MLflow run id (kept out
of the summary, which DVC versions and which is the same on every machine)."""
CHECKPOINT_DIR = "checkpoints"
PLOT_DIR = "plots"
RUN_CONFIG_FILE = "run_config.json"
LAUNCH_ENV = "TESSERA_LAUNCH_ID"  # the launch a training process belongs to (in train_run.json)

ModelType = Literal["seg_ae", "vae", "cvae", "ssvae"]
Precision = Literal["32", "16-mixed", "bf16-mixed"]
# arguments the data decides (channels, tile size, classes), never set in params.yaml
DATA_ARGS = frozenset({"in_channels", "image_size", "num_classes", "model_type"})


class TrainerParams(BaseModel):
    """Lightning ``Trainer`` settings."""

    model_config = ConfigDict(extra="forbid")
    accelerator: str = Field(default="cpu", description="cpu, gpu or auto (Lightning's).")
    devices: int = Field(default=1, ge=1, description="Processes per node (DDP over several).")
    num_nodes: int = Field(default=1, ge=1, description="Nodes of a multi-node run.")
    strategy: str = Field(
        default="auto", description="Lightning's strategy (auto: DDP if several)."
    )
    precision: Precision = Field(default="32", description="Lightning's precision.")
    max_epochs: int = Field(default=5, ge=1, description="Epochs at most.")
    limit_train_batches: int | float = Field(
        default=1.0, description="Training batches per epoch: a count, or a share of them."
    )
    limit_val_batches: int | float = Field(
        default=1.0, description="Validation batches: a count, or a share of them."
    )
    seed: int = Field(
        default=0, description="Seed of the weights, the batch order and the augmentation."
    )
    deterministic: bool | Literal["warn"] = Field(
        default=True,
        description="Deterministic algorithms; 'warn' where one has none (grid_sample on CUDA).",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="Intra-op CPU threads of each training process (None: torch's default, "
        "one per core). CPU results depend on it: pin it to reproduce them on other machines.",
    )
    cpu_isa: Literal["SSE41", "AVX2", "AVX512_CORE", "DEFAULT"] = Field(
        default="DEFAULT",
        description="Highest instruction set of the CPU kernels of ATen, oneDNN and MKL "
        "(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_CBWR; DEFAULT: the best the CPU has). "
        "AVX2 and AVX-512 kernels "
        "round differently: pin it to reproduce CPU results across CPU generations.",
    )
    log_every_n_steps: int = Field(default=10, ge=1, description="Steps between logged losses.")
    gradient_clip_val: float | None = Field(
        default=None,
        gt=0,
        description="Clip the gradients' global L2 norm to this before each optimiser step "
        "(None: no clipping). Guards a high peak learning rate against one diverging step.",
    )
    early_stopping_patience: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many validations without a better monitored metric "
        "(None: run max_epochs).",
    )
    monitor: str = Field(default="val_loss", description="Metric that picks best.ckpt.")
    monitor_mode: Literal["min", "max"] = Field(
        default="min", description="Whether the monitored metric is better lower or higher."
    )


class LoaderParams(BaseModel):
    """DataLoader settings."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(default=32, ge=1, description="Tiles per batch and process.")
    num_workers: int = Field(
        default=0, ge=0, description="DataLoader worker processes (0: read in the trainer)."
    )
    pin_memory: bool = Field(default=False, description="Page-locked batches (CUDA only).")


class DatasetParams(BaseModel):
    """Which tiles an experiment trains on, and how tile classes are derived."""

    model_config = ConfigDict(extra="forbid")
    sources: list[str] = Field(min_length=1, description="The catalogued sources trained on.")
    normalisation: Normalisation = Field(
        default="zscore",
        description="zscore or percentile (the store's statistics), image_zscore (MRI: each "
        "image's foreground), image_percentile (each scene's 2-98 %), ct (clip to the store's "
        "0.5-99.5 %, then z-score) or none.",
    )
    augment: Augment = Field(
        default="dihedral",
        description="dihedral (the 8 rotations and flips), plain (random crops at random "
        "positions, flips, affine and elastic deformation, bias field, gamma, contrast, noise), "
        "synthseg (plain on images synthesised from the labels) or none; true and false mean "
        "dihedral and none.",
    )
    crop: float = Field(
        default=0.75, gt=0, le=1, description="plain, synthseg: the random crop's share of a tile."
    )
    synth_probability: float = Field(
        default=0.5, ge=0, le=1, description="synthseg: the share of images synthesised."
    )

    @field_validator("augment", mode="before")
    @classmethod
    def _booleans(cls, v: Any) -> Any:
        return {True: "dihedral", False: "none"}.get(v, v) if isinstance(v, bool) else v

    tile_class: Literal["none", "majority", "presence"] = Field(
        default="none",
        description="Tile classes (ssvae, cvae) from the labels: majority (the largest "
        "class) or presence (the largest non-first class above presence_threshold).",
    )
    presence_threshold: float = Field(
        default=0.05, ge=0, le=1, description="presence: the share a class must cover."
    )
    labels_per_class: int | None = Field(
        default=None, ge=1, description="Keep this many seeded labels per class in training."
    )
    labelled_fraction: float | None = Field(
        default=None, gt=0, lt=1, description="Oversample labelled training tiles to this share."
    )


class RunConfig(BaseModel):
    """Everything ``python -m tessera.models.run.fit`` needs: written by the train flow as JSON."""

    model_config = ConfigDict(extra="forbid")
    experiment: str
    store: str
    out_dir: str
    tracking_uri: str | None = None
    artifact_location: str | None = None
    dataset: DatasetParams
    model: dict[str, Any]
    trainer: TrainerParams = Field(default_factory=TrainerParams)
    loader: LoaderParams = Field(default_factory=LoaderParams)


def model_schema(model_type: str) -> type[BaseModel]:
    """A pydantic model of the module's constructor arguments, less those the data decides."""
    fields: dict[str, Any] = {
        arg.name: (arg.annotation, arg.default)
        for arg in constructor_arguments(model_type)
        if arg.name not in DATA_ARGS
    }
    name = f"{model_type.title().replace('_', '')}Params"
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def validate_model_params(model: dict[str, Any]) -> dict[str, Any]:
    """Check ``{"type": ..., **hyper-parameters}``; returns the type plus every argument filled."""
    if "type" not in model:
        raise ValueError("model.type is required (seg_ae, vae, cvae or ssvae)")
    rest = {k: v for k, v in model.items() if k != "type"}
    checked = model_schema(model["type"]).model_validate(rest)
    return {"type": model["type"], **checked.model_dump()}
