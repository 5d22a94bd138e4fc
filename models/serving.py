"""What the registry serves: one plain ``nn.Module`` per model type, one tensor in, one out.

Input is a batch of normalised tiles (N, C, H, W), as the tile store's DataModule gives them.

- ``seg_ae``: per-pixel class logits (N, K, H, W), or the reconstruction without classes;
- ``vae``: the posterior mean μ (N, D);
- ``cvae``: μ under each class hypothesis (N, K, D);
- ``ssvae``: class probabilities q(y|x) (N, K).

The wrappers hold only the networks (no Lightning state), so ``torch.export`` can trace them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RECONSTRUCTION_FILE = "reconstruction.pt2"  # beside tessera_model.json in a registered model


class SegServing(nn.Module):
    """Segmentation logits of a :class:`~tessera.models.nets.seg_nets.SegAutoEncoder`."""

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net, self.num_classes = net, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out["seg"] if self.num_classes > 0 else out["rec"]


class ReconstructionServing(nn.Module):
    """The expected reconstruction (N, C, H, W) of a
    :class:`~tessera.models.nets.seg_nets.SegAutoEncoder`, in the normalised units of its
    input."""

    def __init__(self, net: nn.Module, rec_loss: str) -> None:
        super().__init__()
        self.net, self.rec_loss = net, rec_loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from tessera.models.scoring.losses import reconstruction_mean

        return reconstruction_mean(self.rec_loss, self.net(x)["rec"], x)  # type: ignore[arg-type]


class EncoderServing(nn.Module):
    """μ of a Gaussian encoder; with ``num_classes`` > 0, μ for every class (N, K, D)."""

    def __init__(self, encoder: nn.Module, num_classes: int = 0) -> None:
        super().__init__()
        self.encoder, self.num_classes = encoder, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_classes == 0:
            return self.encoder(x, None)[0]
        k, n = self.num_classes, x.shape[0]
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        onehot = eye.repeat_interleave(n, dim=0)
        mu = self.encoder(x.repeat(k, 1, 1, 1), onehot)[0]
        return mu.view(k, n, -1).transpose(0, 1)


class ClassifierServing(nn.Module):
    """Class probabilities of the M2 classifier q(y|x)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.classifier(x), dim=1)


def save_exported(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """``module`` traced by ``torch.export`` on ``example`` (batch dimension dynamic) and
    saved as a .pt2 graph: loaded back without unpickling any Python object."""
    from torch.export import Dim, export

    program = export(module, (example,), dynamic_shapes=({0: Dim.AUTO},))
    torch.export.save(program, str(path))
    return path


def load_exported(path: Path) -> Any:
    """A graph saved by :func:`save_exported`, as a callable module."""
    return torch.export.load(str(path)).module()
