"""A registered model version loaded back from MLflow, with its ``tessera_model.json``.

``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` resolve against the configured tracking
store; the version's files are downloaded into a temporary folder, the torch.export graph is
loaded from there (never unpickled), and the descriptor is read from the model's
``extra_files``. A version registered without a descriptor is refused: prediction would
have to guess its bands and normalisation.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.models.descriptor import DESCRIPTOR_FILE
from tessera.models.serving import RECONSTRUCTION_FILE, load_exported
from tessera.tasks.evaluation.clusters import CLUSTERS_FILE, read_centroids
from tessera.tasks.registry.mlflow_registry import RegistryError, check_tracking, using_tracking

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass
class RegisteredModel:
    """A loaded model version: the serving module, its descriptor's text and its lineage."""

    module: Any
    descriptor_text: bytes
    name: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    reconstruction: Any = None
    centroids: Any = None  # a latent-only model's k-means centroids (clusters.json)


def parse_model_uri(ref: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    m = _MODEL_URI.match(ref)
    if not m:
        raise RegistryError(f"{ref}: not a model URI (models:/NAME@ALIAS or models:/NAME/VERSION)")
    return m["name"], m["alias"], m["version"]


def load_registered(ref: str, tracking_uri: str) -> RegisteredModel:
    """Load ``ref`` from ``tracking_uri``; unknown names, aliases and versions, an unreachable
    store and a version without ``tessera_model.json`` are refused in one line."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(ref)
    check_tracking(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(version))
        )
    except MlflowException:
        known = _known_versions(client, name)
        raise RegistryError(
            f"{ref}: no such registered model version in {tracking_uri}{known}"
        ) from None
    return _download_and_load(f"models:/{name}/{mv.version}", ref, mv, tracking_uri)


def _known_versions(client: Any, name: str) -> str:
    try:
        model = client.get_registered_model(name)
    except Exception:
        return f" (no model named {name})"
    aliases = ", ".join(f"@{a}" for a in sorted(model.aliases)) or "no aliases"
    return f" ({name} has {aliases})"


def _download_and_load(uri: str, ref: str, mv: Any, tracking_uri: str) -> RegisteredModel:
    import mlflow.artifacts
    import mlflow.pytorch

    with (
        tempfile.TemporaryDirectory(prefix="tessera-predict-") as tmp,
        using_tracking(tracking_uri),
    ):
        try:
            local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp))
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise RegistryError(f"{ref}: cannot download the model: {first[:300]}") from None
        card = local / "extra_files" / DESCRIPTOR_FILE
        if not card.is_file():
            raise RegistryError(
                f"{ref}: v{mv.version} has no {DESCRIPTOR_FILE} (registered before Tessera "
                "logged one); run `tessera register` again to register it with one"
            )
        if not (local / "data" / "model.pt2").is_file():
            raise RegistryError(f"{ref}: v{mv.version} is not a torch.export model; not loaded")
        try:
            module = mlflow.pytorch.load_model(str(local))
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise RegistryError(f"{ref}: does not load: {first[:300]}") from None
        graph = local / "extra_files" / RECONSTRUCTION_FILE
        reconstruction = load_exported(graph) if graph.is_file() else None
        centroids = read_centroids(local / "extra_files" / CLUSTERS_FILE)
        return RegisteredModel(
            module, card.read_bytes(), mv.name, str(mv.version), dict(mv.tags), reconstruction,
            centroids,
        )  # fmt: skip
