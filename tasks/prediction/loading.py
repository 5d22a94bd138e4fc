"""The model a reference names, loaded: a registered version or a run's checkpoint."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tessera.models.descriptor import ModelDescriptor
from tessera.tasks.prediction.model import AppliedModel, ModelSource, checkpoint_model
from tessera.tasks.prediction.predict_options import PredictOptions
from tessera.tasks.sources.records import SceneRecord

_LOADED: dict[str, AppliedModel] = {}  # one model per process, shared by its threads
_LOCK = threading.Lock()


def load_model(source: ModelSource) -> AppliedModel:
    """Load the model ``source`` names; one-line errors for unknown or unreadable ones.

    A registered version carries its lineage as tags (``git_sha`` among them); a checkpoint
    gets the commit checked out in the working directory.
    """
    if source.run is None:
        from tessera.tasks.registry.mlflow_loading import load_registered

        reg = load_registered(source.ref, source.tracking_uri or "")
        descriptor = ModelDescriptor.parse(reg.descriptor_text, source.ref)
        if source.contract is not None:  # the MLM Item's contract, in place of the model's
            from tessera.tasks.registry.mlm_item import with_contract

            where = source.contract_from or source.ref
            descriptor = with_contract(descriptor, source.contract, where)
        return AppliedModel(
            reg.module, descriptor, reg.name, reg.version, source.ref, reg.tags,
            reg.reconstruction, reg.centroids,
        )  # fmt: skip
    from tessera.tasks.registry.lineage import git_sha

    model = checkpoint_model(source.run, Path(source.checkpoint or ""), source.ref)
    model.tags["git_sha"] = git_sha(Path.cwd())
    if source.clusters and model.descriptor.output == "latent_mean":
        from tessera.tasks.evaluation.clusters import read_centroids

        model.centroids = read_centroids(Path(source.clusters))
    return model


def pinned(source: ModelSource, model: AppliedModel) -> ModelSource:
    """``source`` naming the exact version loaded (an alias may move during a run), for the
    tasks that load it again in other processes (a Dask cluster)."""
    if source.run is None:
        return source.model_copy(update={"ref": f"models:/{model.name}/{model.version}"})
    return source


def cached_model(source: ModelSource) -> AppliedModel:
    """The model ``source`` names, loaded once per process (a loaded graph does not pickle,
    so mapped tasks receive the source and load it where they run)."""
    key = source.model_dump_json()
    with _LOCK:
        if key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = load_model(source)
        return _LOADED[key]


def predict_scene_with(
    rec: SceneRecord,
    base: Path,
    source: ModelSource,
    options: PredictOptions,
    out_dir: Path,
    rows: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """:func:`~tessera.tasks.prediction.apply.predict_scene` with the model ``source`` names."""
    from tessera.tasks.prediction.apply import predict_scene

    return predict_scene(rec, base, cached_model(source), options, out_dir, rows)


def assemble_scene_with(
    rec: SceneRecord,
    base: Path,
    source: ModelSource,
    options: PredictOptions,
    out_dir: Path,
    bands: list[tuple[int, int]],
) -> dict[str, Any]:
    """:func:`~tessera.tasks.prediction.apply.assemble_scene` with the model ``source`` names."""
    from tessera.tasks.prediction.apply import assemble_scene

    return assemble_scene(rec, cached_model(source), options, out_dir, bands, base)
