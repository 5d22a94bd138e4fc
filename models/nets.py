"""Networks assembled from :mod:`tessera.models.blocks`: the segmentation autoencoder and the
VAE parts."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from tessera.models.blocks import (
    ActKind,
    ConvKind,
    ConvNormAct,
    DilatedContext,
    NormKind,
    SpatialTransformer,
    make_act,
    make_conv,
    make_norm,
)

CapacityMode = Literal["undercomplete", "complete", "overcomplete"]


def capacity_mode(ratio: float) -> CapacityMode:
    """Name the capacity regime of a latent/input element ratio."""
    if abs(ratio - 1.0) < 1e-9:
        return "complete"
    return "undercomplete" if ratio < 1.0 else "overcomplete"


def _conv_dilation(conv: ConvKind, dilation: int) -> int:
    return dilation if conv == "dilated" else 1


class Encoder(nn.Module):
    """A stem then one stride-2 down-sampling stage per width after the first.

    Args:
        in_ch: Input channels.
        widths: Channels of the stem and of each stride-2 stage after it.
        conv: Kind of the convolution after each stage: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        groups: Groups of the group convolution kind.
        dilation: Dilation of the dilated convolution kind.
    """

    def __init__(
        self,
        in_ch: int,
        widths: Sequence[int],
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        groups: int = 1,
        dilation: int = 2,
    ) -> None:
        super().__init__()
        d = _conv_dilation(conv, dilation)
        stem_conv: ConvKind = "standard" if conv == "group" else conv
        layers: list[nn.Module] = [ConvNormAct(in_ch, widths[0], stem_conv, norm, act, dilation=d)]
        for a, b in itertools.pairwise(widths):
            layers.append(ConvNormAct(a, b, "standard", norm, act, stride=2))
            layers.append(ConvNormAct(b, b, conv, norm, act, dilation=d, groups=groups))
        self.layers = nn.Sequential(*layers)
        self.out_channels = widths[-1]
        self.downsampling = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Transposed-conv up-sampling stages mirroring :class:`Encoder`.

    Args:
        widths: The encoder's widths; the stages run them in reverse.
        conv: Kind of the convolution after each stage: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        groups: Groups of the group convolution kind.
        dilation: Dilation of the dilated convolution kind.
    """

    def __init__(
        self,
        widths: Sequence[int],
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        groups: int = 1,
        dilation: int = 2,
    ) -> None:
        super().__init__()
        d = _conv_dilation(conv, dilation)
        rev = list(widths)[::-1]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(rev):
            layers += [make_conv("transposed", a, b, stride=2), _norm_act(norm, act, b)]
            layers.append(ConvNormAct(b, b, conv, norm, act, dilation=d, groups=groups))
        self.layers = nn.Sequential(*layers)
        self.out_channels = rev[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _norm_act(norm: NormKind, act: ActKind, ch: int) -> nn.Sequential:
    return nn.Sequential(make_norm(norm, ch), make_act(act))


class SegAutoEncoder(nn.Module):
    """Encoder → dilated context → latent bottleneck → decoder with reconstruction and seg heads.

    ``rec_channels`` is the reconstruction head's width (2·C for a learned-variance output).

    Args:
        in_channels: Bands of a tile.
        num_classes: Classes of the segmentation head (0: none).
        rec_channels: Channels of the reconstruction head.
        widths: Channels of the encoder stages (each halves the tile); the decoder mirrors
            them.
        latent_channels: Channels of the bottleneck.
        dilations: Dilations of the context module's 3×3 convolutions, one after the other.
        conv: Kind of the convolution after each stage: standard, dilated,
            depthwise_separable, group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        groups: Groups of the group convolution kind.
        conv_dilation: Dilation of the dilated convolution kind.
        stn: Put a spatial transformer in front of the encoder.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rec_channels: int,
        widths: Sequence[int] = (32, 64),
        latent_channels: int = 16,
        dilations: Sequence[int] = (1, 2, 4, 8),
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        groups: int = 1,
        conv_dilation: int = 2,
        stn: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.latent_channels = in_channels, latent_channels
        self.stn = SpatialTransformer(in_channels) if stn else None
        self.encoder = Encoder(in_channels, widths, conv, norm, act, groups, conv_dilation)
        top = self.encoder.out_channels
        self.context = DilatedContext(top, dilations, norm, act)
        self.to_latent = nn.Conv2d(top, latent_channels, 1)
        self.from_latent = ConvNormAct(latent_channels, top, "standard", norm, act)
        self.decoder = Decoder(widths, conv, norm, act, groups, conv_dilation)
        self.rec_head = nn.Conv2d(self.decoder.out_channels, rec_channels, 1)
        self.seg_head = nn.Conv2d(self.decoder.out_channels, max(num_classes, 1), 1)

    @property
    def compression_ratio(self) -> float:
        """Latent elements per input element."""
        return self.latent_channels / (self.in_channels * self.encoder.downsampling**2)

    @property
    def mode(self) -> CapacityMode:
        return capacity_mode(self.compression_ratio)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        theta = None
        if self.stn is not None:
            x, theta = self.stn(x)
        z = self.to_latent(self.context(self.encoder(x)))
        h = self.decoder(self.from_latent(z))
        rec, seg = self.rec_head(h), self.seg_head(h)
        if theta is not None:
            rec = SpatialTransformer.unwarp(rec, theta)
            seg = SpatialTransformer.unwarp(seg, theta)
        return {"rec": rec, "seg": seg, "z": z}


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

    def __init__(
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
