"""The model a reference names, loaded: a registered version or a run's checkpoint."""

from __future__ import annotations

from pathlib import Path

from tessera.models.descriptor import ModelDescriptor
from tessera.tasks.prediction.model import AppliedModel, ModelSource, checkpoint_model


def load_model(source: ModelSource) -> AppliedModel:
    """Load the model ``source`` names; one-line errors for unknown or unreadable ones.

    A registered version carries its lineage as tags (``git_sha`` among them); a checkpoint
    gets the commit checked out in the working directory.
    """
    if source.run is None:
        from tessera.tasks.registry.mlflow_loading import load_registered

        reg = load_registered(source.ref, source.tracking_uri or "")
        descriptor = ModelDescriptor.parse(reg.descriptor_text, source.ref)
        return AppliedModel(
            reg.module, descriptor, reg.name, reg.version, source.ref, reg.tags,
            reg.reconstruction,
        )  # fmt: skip
    from tessera.tasks.registry.lineage import git_sha

    model = checkpoint_model(source.run, Path(source.checkpoint or ""), source.ref)
    model.tags["git_sha"] = git_sha(Path.cwd())
    return model
