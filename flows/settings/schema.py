"""The one config: ``params.yaml`` grouped by stage, validated by pydantic, ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.models.run.run_config import DatasetParams, LoaderParams, TrainerParams
from tessera.tasks.base.files import read_yaml_mapping
from tessera.tasks.prediction.predict_options import PredictOptions
from tessera.tasks.sources.specs import OnBadInput, SourceSpec, on_bad_input_field
from tessera.tasks.tiling.params import TileParams
from tessera.tasks.training.launch_options import LaunchLimits

PARAMS_FILE = "params.yaml"  # the project's one config, at its root
M = TypeVar("M", bound=BaseModel)


def updated(model: M, **changes: Any) -> M:
    """``model`` with ``changes`` applied (None: not given), validated again as a whole."""
    given = {k: v for k, v in changes.items() if v is not None}
    return type(model).model_validate(model.model_dump() | given) if given else model


class RunnerParams(LaunchLimits):
    """Where the work runs, not what it computes (no stage's outputs depend on it, so DVC does
    not track it): mapped tasks on threads or Dask, trainings here or as Slurm jobs, and the
    trainings' restarts and bounds (:class:`LaunchLimits`)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["threads", "dask"] = Field(
        default="threads", description="Where mapped tasks run: threads here, or Dask."
    )
    address: str | None = Field(default=None, description="Dask scheduler; None: a LocalCluster.")
    cluster_class: str | None = Field(
        default=None,
        description="A Dask cluster class to start per flow run (dask_jobqueue.SLURMCluster).",
    )
    cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Its arguments (cores, memory, queue, walltime...)."
    )
    n_workers: int = Field(default=2, ge=1, description="Dask workers (LocalCluster, cluster).")
    max_workers: int = Field(default=2, ge=1, description="Threads for the thread runner.")
    connect_timeout_s: float = Field(
        default=60, gt=0, description="Bound on reaching the scheduler and its workers."
    )
    training: Literal["local", "slurm"] = Field(
        default="local", description="local: here (torchrun for several); slurm: a Slurm job."
    )


class IngestParams(BaseModel):
    """``tessera ingest``: sources in, ``catalog`` out."""

    model_config = ConfigDict(extra="forbid")
    sources: list[SourceSpec] = Field(
        default_factory=list,
        description="The inputs: each a name, a kind (geotiff, nifti, dicom) and its paths or "
        "glob patterns, with optional labels and bands.",
    )
    catalog: str = Field(
        default="outputs/catalog.parquet", description="The catalogue written: one row a scene."
    )
    on_bad_input: OnBadInput = on_bad_input_field()


class TileStageParams(TileParams):
    """``tessera tile``: the catalogue in, the tile store ``out``."""

    catalog: str = Field(default="outputs/catalog.parquet", description="The catalogue read.")
    out: str = Field(default="outputs/tiles", description="The tile store written.")
    on_bad_input: OnBadInput = on_bad_input_field()

    def geometry(self) -> TileParams:
        """Only the fields that shape the tiles (they key the content-addressed parts)."""
        return TileParams.model_validate(self.model_dump(include=set(TileParams.model_fields)))


class TrainParams(BaseModel):
    """``tessera train``: defaults every experiment starts from."""

    model_config = ConfigDict(extra="forbid")
    store: str = Field(default="outputs/tiles", description="The tile store trained on.")
    out: str = Field(default="outputs/models", description="One folder per experiment here.")
    tracking_uri: str | None = Field(
        default=None,
        description=(
            "MLflow URI; None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here; "
            '"": train untracked.'
        ),
    )
    rdzv_endpoint: str | None = Field(
        default=None, description="host:port of torchrun's c10d rendezvous for multi-node runs."
    )
    trainer: TrainerParams = Field(default_factory=TrainerParams)
    loader: LoaderParams = Field(default_factory=LoaderParams)


class EvaluateParams(BaseModel):
    """``tessera evaluate``: how the latent space and the outputs of a model are judged."""

    model_config = ConfigDict(extra="forbid")
    out: str = Field(default="outputs/eval", description="One folder per experiment here.")
    split: Literal["train", "val", "test"] = Field(
        default="test", description="The split whose latents are clustered and scored."
    )
    tile_class: Literal["majority", "presence"] = Field(
        default="majority", description="Tile labels for clustering when training used none."
    )
    k: int | None = Field(default=None, ge=2, description="None: classes, else best silhouette.")
    k_max: int = Field(default=8, ge=2, description="The most clusters the search tries.")
    noise: float = Field(default=0.05, ge=0, description="Contrastive views: noise std.")
    tsne: bool = Field(default=True, description="Also a t-SNE plot of the latents.")
    batch_size: int = Field(default=64, ge=1, description="Tiles per forward pass.")
    seed: int = Field(
        default=0, description="Seed of k-means, PCA, t-SNE, the contrastive views, baselines."
    )
    map_splits: list[Literal["train", "val", "test"]] = Field(
        default=["train", "val", "test"],
        description="The splits whose tiles the cluster maps of whole scenes show.",
    )


class RegistryParams(BaseModel):
    """``tessera register``: the promotion gate and how hard to retry the tracking server."""

    model_config = ConfigDict(extra="forbid")
    min_improvement: float = Field(
        default=0.0, ge=0, description="How much a candidate must beat the champion by."
    )
    require_beats_baseline: bool = Field(
        default=False,
        description="Champion only for a model that beats its evaluation's best baseline.",
    )
    out: str = Field(default="outputs/registry", description="One record per experiment.")
    retries: int = Field(default=4, ge=0, description="HTTP retries per MLflow request.")
    backoff_s: int = Field(
        default=1, ge=0, description="Backoff factor: retries sleep 0, 2, 4, 8 … times it, in s."
    )
    ready_timeout_s: float = Field(
        default=120.0, gt=0, description="Bound on the wait for a new version to be READY."
    )
    example_tiles: int = Field(default=4, ge=2, description="Input example batch (>= 2).")


class ExperimentRegistry(BaseModel):
    """Per experiment: the registered name and the metric the gate compares."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="None: tessera-<experiment>.")
    primary_metric: str | None = Field(default=None, description="None: by model type.")
    direction: Literal["max", "min"] = Field(
        default="max", description="Whether a higher or a lower primary metric is better."
    )


class ExperimentParams(BaseModel):
    """One model trained on one dataset; ``trainer``/``loader`` override ``train``'s."""

    model_config = ConfigDict(extra="forbid")
    dataset: DatasetParams
    model: dict[str, Any] = Field(description="type (seg_ae, vae, cvae, ssvae) + arguments.")
    trainer: dict[str, Any] = Field(
        default_factory=dict, description="Keys of train.trainer this experiment overrides."
    )
    loader: dict[str, Any] = Field(
        default_factory=dict, description="Keys of train.loader this experiment overrides."
    )
    registry: ExperimentRegistry = Field(default_factory=ExperimentRegistry)
    heldout: list[str] = Field(
        default_factory=list,
        description="Catalogued sources with labels that the model never trains on: evaluate "
        "maps their scenes whole and scores them (heldout_* metrics), and the registry gate "
        "decides on the held-out score.",
    )

    @model_validator(mode="after")
    def _crops_need_a_fully_convolutional_model(self) -> ExperimentParams:
        kind = self.model.get("type")
        if self.dataset.augment in ("plain", "synthseg") and kind != "seg_ae":
            raise ValueError(
                f"dataset.augment {self.dataset.augment} crops tiles, which only seg_ae takes "
                f"(a {kind} reads whole tiles): use dihedral or none"
            )
        return self

    @model_validator(mode="after")
    def _held_out_is_not_trained_on(self) -> ExperimentParams:
        both = sorted(set(self.heldout) & set(self.dataset.sources))
        if both:
            raise ValueError(f"source(s) {both} are both trained on and held out")
        return self


class TesseraParams(BaseModel):
    """All of ``params.yaml``."""

    model_config = ConfigDict(extra="forbid")
    ingest: IngestParams = Field(default_factory=IngestParams)
    tile: TileStageParams = Field(default_factory=TileStageParams)
    runner: RunnerParams = Field(default_factory=RunnerParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)
    predict: PredictOptions = Field(default_factory=PredictOptions)
    experiments: dict[str, ExperimentParams] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _held_out_sources_exist(self) -> TesseraParams:
        known = {s.name for s in self.ingest.sources}
        for name, exp in self.experiments.items():
            unknown = sorted(set(exp.heldout) - known)
            if unknown:
                raise ValueError(f"experiments.{name}.heldout: {unknown} not in ingest.sources")
        return self


def _set_key(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        nxt = d.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            d[k] = nxt
        d = nxt
    d[keys[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides; values are parsed as YAML (``3`` → int, ``[a, b]`` → list)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, _, text = item.partition("=")
        _set_key(raw, key.strip(), yaml.safe_load(text) if text else None)
    return raw


def validated_params(raw: dict[str, Any]) -> TesseraParams:
    """``params.yaml``'s mapping validated, with the active profile's ``runner`` over it."""
    from tessera.flows.settings.profiles import with_profile

    return TesseraParams.model_validate(with_profile(raw))


def load_params(path: Path | None, overrides: list[str] | None = None) -> TesseraParams:
    """Read, override and validate ``params.yaml``; no file (None) means all defaults."""
    raw = read_yaml_mapping(path) if path is not None else {}
    return validated_params(apply_overrides(raw, overrides or []))
