"""LightningModules in torchgeo's trainer style: hyper-parameters, then models, losses, metrics.

``seg_ae`` is :class:`SegAEModule`; ``vae`` and ``cvae`` are :class:`VAEModule`; ``ssvae`` is
:class:`SSVAEModule` (Kingma et al. 2014, M2). Constructor arguments are flat, with ``Literal``
choices, so ``params.yaml`` validates against the signatures.
"""

from tessera.models.trainers.base import BaseModule
from tessera.models.trainers.segmentation import SegAEModule
from tessera.models.trainers.ssvae import SSVAEModule
from tessera.models.trainers.vae import VAEModule

__all__ = ["MODEL_MODULES", "BaseModule", "SSVAEModule", "SegAEModule", "VAEModule"]

MODEL_MODULES: dict[str, type[BaseModule]] = {
    "seg_ae": SegAEModule,
    "vae": VAEModule,
    "cvae": VAEModule,
    "ssvae": SSVAEModule,
}
