"""The named choices of the networks and LightningModules (``Literal`` types), in a module that
imports neither torch nor Lightning, so that ``params.yaml`` is validated without them."""

from __future__ import annotations

from typing import Literal

ConvKind = Literal[
    "standard", "dilated", "depthwise_separable", "group", "deformable", "transposed"
]
NormKind = Literal["batch", "instance", "group", "none"]
ActKind = Literal["relu", "leaky_relu", "prelu", "gelu", "silu", "none"]
RecLoss = Literal["mse", "l1", "bce", "gaussian_nll"]
LatentReg = Literal["none", "l1", "l2"]
Warmup = Literal["none", "linear", "cyclical"]
CapacityMode = Literal["undercomplete", "complete", "overcomplete"]
Skips = Literal["none", "seg", "all"]
LrSchedule = Literal["constant", "cosine", "one_cycle"]
ClusterReg = Literal["none", "dec", "vade"]
Augment = Literal["none", "dihedral", "plain", "synthseg"]  # models/data/augment.py
