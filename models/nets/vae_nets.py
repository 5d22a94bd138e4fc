"""The VAE family's networks: a Gaussian encoder, a decoder from the latent (and a class),
and the tile classifier of the semi-supervised VAE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tessera.models.kinds import ActKind, ConvKind, NormKind
from tessera.models.nets.seg_nets import Decoder, Encoder

# log σ² is soft-bounded to ±6 (σ² in [0.0025, 403]): an unbounded head can return e^30 for an
# (x, y) pair it never saw, and one such −ELBO spike froze the ssvae classifier's Adam steps
LOGVAR_BOUND = 6.0


class GaussianEncoder(nn.Module):
    """Conv encoder to μ and log σ² of a ``latent_dim`` Gaussian; ``cond`` adds channels.

    Args:
        in_channels: Bands of a tile.
        image_size: Tile edge in pixels (divisible by the down-sampling).
        latent_dim: Size of μ and log σ².
        widths: Channels of the encoder stages (each halves the tile).
        cond_channels: Length of the condition vector, broadcast as extra input channels (0:
            none).
        conv: Kind of the convolution after each stage: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
    """

    def __init__(  # noqa: PLR0913 - the params.yaml schema: one documented argument per key
        self,
        in_channels: int,
        image_size: int,
        latent_dim: int,
        widths: Sequence[int] = (32, 64),
        cond_channels: int = 0,
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
    ) -> None:
        super().__init__()
        self.body = Encoder(in_channels + cond_channels, widths, conv, norm, act)
        side = image_size // self.body.downsampling
        flat = self.body.out_channels * side * side
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if cond is not None:
            x = torch.cat([x, cond[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
        h = self.body(x).flatten(1)
        return self.mu(h), LOGVAR_BOUND * torch.tanh(self.logvar(h) / LOGVAR_BOUND)


class GaussianDecoder(nn.Module):
    """Latent (plus an optional condition vector) to an image through transposed convs.

    Args:
        out_channels: Channels of the output (2·C for a learned variance).
        image_size: Tile edge in pixels.
        latent_dim: Size of z.
        widths: The encoder's widths; the stages run them in reverse.
        cond_dim: Length of the condition vector appended to z (0: none).
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
    """

    def __init__(
        self,
        out_channels: int,
        image_size: int,
        latent_dim: int,
        widths: Sequence[int] = (32, 64),
        cond_dim: int = 0,
        norm: NormKind = "batch",
        act: ActKind = "relu",
    ) -> None:
        super().__init__()
        self.top, self.side = widths[-1], image_size // 2 ** (len(widths) - 1)
        if self.side * 2 ** (len(widths) - 1) != image_size:
            raise ValueError(f"image_size {image_size} is not divisible by the down-sampling")
        self.fc = nn.Linear(latent_dim + cond_dim, self.top * self.side * self.side)
        self.body = Decoder(widths, "standard", norm, act)
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            z = torch.cat([z, cond], dim=1)
        h = torch.relu(self.fc(z)).view(-1, self.top, self.side, self.side)
        return self.head(self.body(h))


class TileClassifier(nn.Module):
    """Conv encoder, global pooling and a linear layer: class logits per tile.

    Args:
        in_channels: Bands of a tile.
        num_classes: Classes to score.
        widths: Channels of the encoder stages (each halves the tile).
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        dropout: Dropout before the linear layer.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (32, 64),
        norm: NormKind = "batch",
        act: ActKind = "relu",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.body = Encoder(in_channels, widths, "standard", norm, act)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(widths[-1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
