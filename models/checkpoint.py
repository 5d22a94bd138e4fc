"""A training's checkpoints: their names, reading one safely, and the one model loader.

A checkpoint holds the LightningModule's weights and the hyper-parameters its constructor
took (``save_hyperparameters``), plus what Tessera adds when it trains: the model type and
the model's descriptor (``tessera_model.json``: bands, normalisation, window, classes). So
:func:`load_checkpoint` rebuilds the model from the checkpoint alone, as Lightning's
``load_from_checkpoint`` does, without the training's tile store. Evaluation, registration
and prediction all load models here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEST_CHECKPOINT = "best.ckpt"
"""The checkpoint of the best validation epoch, in the run's ``checkpoints/`` folder."""
LAST_CHECKPOINT = "last.ckpt"
"""The checkpoint of the latest epoch, which ``--resume`` continues from."""
MODEL_TYPE_KEY = "tessera_model_type"
DESCRIPTOR_KEY = "tessera_model_descriptor"
HPARAMS_KEY = "hyper_parameters"  # Lightning's own


@dataclass
class LoadedModel:
    """A model rebuilt from its checkpoint, in eval mode."""

    module: Any
    """The LightningModule (a :class:`~tessera.models.trainers.BaseModule`) with its weights."""
    model_type: str
    steps: int
    """Optimiser steps the checkpoint had taken."""
    descriptor: Any = None
    """Its :class:`~tessera.models.descriptor.ModelDescriptor`; None for a checkpoint written
    before Tessera saved one."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, read with ``weights_only=True`` (nothing is
    unpickled); a missing, unreadable or foreign file is refused in one line."""
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (run `tessera train` first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or holding more than weights
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ValueError(f"{path}: not a Lightning checkpoint")
    return state


def load_checkpoint(
    path: Path, model_type: str | None = None, cpu_isa: str = "DEFAULT"
) -> LoadedModel:
    """The model of checkpoint ``path``, rebuilt from the hyper-parameters saved in it.

    Args:
        path: a checkpoint written by ``tessera train``.
        model_type: the model type, for a checkpoint that does not record its own (the
            checkpoint's wins; a different one is refused).
        cpu_isa: the instruction set the training pinned (``train.trainer.cpu_isa``), pinned
            here too before any kernel runs, so that results are the training's.
    """
    from tessera.models.descriptor import ModelDescriptor
    from tessera.models.run.cpu import pin_cpu_kernels
    from tessera.models.trainers import MODEL_MODULES

    pin_cpu_kernels(None, cpu_isa)
    state = read_checkpoint(path)
    saved = state.get(MODEL_TYPE_KEY)
    if saved is not None and model_type is not None and saved != model_type:
        raise ValueError(f"{path}: a {saved} checkpoint, not {model_type}")
    kind = saved or model_type
    if kind not in MODEL_MODULES:
        raise ValueError(f"{path}: no model type recorded (give the experiment's)")
    hparams = state.get(HPARAMS_KEY)
    if not isinstance(hparams, dict):
        raise ValueError(f"{path}: no hyper-parameters saved with the weights")
    try:
        module = MODEL_MODULES[kind](**hparams)
        module.load_state_dict(state["state_dict"])
    except (TypeError, RuntimeError) as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"{path}: does not fit this Tessera's {kind} ({first})") from None
    text = state.get(DESCRIPTOR_KEY)
    descriptor = None if text is None else ModelDescriptor.parse(text, str(path))
    return LoadedModel(module.eval(), kind, int(state.get("global_step", 0)), descriptor)


def model_descriptor(model: LoadedModel, run: Any) -> Any:
    """The checkpoint's descriptor; for a checkpoint written before Tessera saved one, the
    descriptor that the tile store of ``run`` (a
    :class:`~tessera.models.run.run_config.RunConfig`) gives."""
    if model.descriptor is not None:
        return model.descriptor
    from tessera.models.descriptor import ModelDescriptor
    from tessera.tasks.store.format import StoreInfo

    info = StoreInfo.read(Path(run.store))
    return ModelDescriptor.build(run, info, model.module.serving_output)
