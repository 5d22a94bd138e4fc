"""LightningModules in torchgeo's trainer style: hyper-parameters, then models, losses, metrics.

``seg_ae`` is :class:`SegAETask`; ``vae`` and ``cvae`` are :class:`VAETask`; ``ssvae`` is
:class:`SSVAETask` (Kingma et al. 2014, M2). Constructor arguments are flat, with ``Literal``
choices, so ``params.yaml`` validates against the signatures.
"""

from tessera.models.trainers.base import BaseTask
from tessera.models.trainers.segmentation import SegAETask
from tessera.models.trainers.ssvae import SSVAETask
from tessera.models.trainers.vae import VAETask

__all__ = ["MODEL_TASKS", "BaseTask", "SSVAETask", "SegAETask", "VAETask"]

MODEL_TASKS: dict[str, type[BaseTask]] = {
    "seg_ae": SegAETask,
    "vae": VAETask,
    "cvae": VAETask,
    "ssvae": SSVAETask,
}
