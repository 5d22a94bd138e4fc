"""Networks assembled from :mod:`tessera.models.nets.blocks`: the segmentation autoencoder and the
VAE parts."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from tessera.models.kinds import CapacityMode, Skips
from tessera.models.nets.blocks import (
    ActKind,
    ConvKind,
    ConvNormAct,
    DilatedContext,
    NormKind,
    PixelPath,
    SpatialTransformer,
    make_act,
    make_conv,
    make_norm,
)


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

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's output and each stage's, finest first (the last is :meth:`forward`'s)."""
        out = self.layers[0](x)
        feats = [out]
        for i in range(1, len(self.layers), 2):
            out = self.layers[i + 1](self.layers[i](out))
            feats.append(out)
        return feats


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


class UpFuse(nn.Module):
    """One U-Net up-sampling stage: transposed conv ×2, then a convolution over it and the
    encoder's feature map of that resolution, concatenated.

    Args:
        in_ch: Channels coming up.
        out_ch: Channels out, and of the encoder's skip feature map.
        conv: Kind of the fusing convolution: standard, dilated, depthwise_separable,
            deformable or transposed (group fuses with a standard one: the concatenated
            channels need not divide into the groups).
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        dilation: Dilation of the dilated convolution kind.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        dilation: int = 2,
    ) -> None:
        super().__init__()
        self.up = nn.Sequential(
            make_conv("transposed", in_ch, out_ch, stride=2), _norm_act(norm, act, out_ch)
        )
        fuse_conv: ConvKind = "standard" if conv == "group" else conv
        d = _conv_dilation(conv, dilation)
        self.fuse = ConvNormAct(2 * out_ch, out_ch, fuse_conv, norm, act, dilation=d)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.up(x), skip], dim=1))


class SkipDecoder(nn.Module):
    """:class:`Decoder`'s stages with the encoder's feature maps joined at each resolution
    (U-Net skip connections).

    Args:
        widths: The encoder's widths; the stages run them in reverse.
        conv: Kind of the fusing convolutions: standard, dilated, depthwise_separable,
            group, deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        groups: Unused (the fusing convolutions of the group kind are standard); kept so
            both decoders take the same arguments.
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
        rev = list(widths)[::-1]
        self.stages = nn.ModuleList(
            UpFuse(a, b, conv, norm, act, dilation) for a, b in itertools.pairwise(rev)
        )
        self.out_channels = rev[-1]

    def forward(self, x: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats``: :meth:`Encoder.features` (finest first); the deepest is not used."""
        for stage, skip in zip(self.stages, feats[-2::-1], strict=True):
            x = stage(x, skip)
        return x


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
        skips: U-Net skip connections from the encoder: none; seg (the segmentation head gets
            its own decoder with them while the reconstruction still passes the bottleneck
            alone, so the latent keeps describing the tile); all (one decoder with them for
            both heads).
        dropout: Spatial dropout on the context module's output (0: none).
        pixel_path: Width of a per-pixel path (:class:`PixelPath`: two 1×1 layers on the
            input at full resolution) whose features join the segmentation head's input
            beside the context (0: none).
    """

    def __init__(  # noqa: PLR0913 - the params.yaml schema: one documented argument per key
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
        skips: Skips = "none",
        dropout: float = 0.0,
        pixel_path: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels, self.latent_channels, self.skips = in_channels, latent_channels, skips
        self.stn = SpatialTransformer(in_channels) if stn else None
        self.encoder = Encoder(in_channels, widths, conv, norm, act, groups, conv_dilation)
        top = self.encoder.out_channels
        self.context = DilatedContext(top, dilations, norm, act)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.to_latent = nn.Conv2d(top, latent_channels, 1)
        self.from_latent = ConvNormAct(latent_channels, top, "standard", norm, act)
        decoding = (conv, norm, act, groups, conv_dilation)
        self.decoder: Decoder | SkipDecoder = (
            SkipDecoder(widths, *decoding) if skips == "all" else Decoder(widths, *decoding)
        )
        self.seg_decoder = SkipDecoder(widths, *decoding) if skips == "seg" else None
        self.rec_head = nn.Conv2d(self.decoder.out_channels, rec_channels, 1)
        self.pixel_path = PixelPath(in_channels, pixel_path, 2, act) if pixel_path else None
        seg_in = self.decoder.out_channels + pixel_path
        self.seg_head = nn.Conv2d(seg_in, max(num_classes, 1), 1)

    @property
    def compression_ratio(self) -> float:
        """Latent elements per input element."""
        return self.latent_channels / (self.in_channels * self.encoder.downsampling**2)

    @property
    def mode(self) -> CapacityMode:
        return capacity_mode(self.compression_ratio)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck z alone (no decoder): what embeddings need."""
        return self._encode(x)[0]

    def _encode(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        theta = None
        if self.stn is not None:
            x, theta = self.stn(x)
        feats = self.encoder.features(x)
        return self.to_latent(self.dropout(self.context(feats[-1]))), feats, theta

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pixels = x
        z, feats, theta = self._encode(x)
        up = self.from_latent(z)
        if isinstance(self.decoder, SkipDecoder):  # skips: all
            h = hs = self.decoder(up, feats)
        else:
            h = self.decoder(up)
            hs = h if self.seg_decoder is None else self.seg_decoder(up, feats)
        if self.pixel_path is not None:
            per_pixel = self.pixel_path(pixels)
            if theta is not None:  # the head works in the transformer's frame until unwarped
                per_pixel = SpatialTransformer.warp(per_pixel, theta)
            hs = torch.cat([hs, per_pixel], dim=1)
        rec, seg = self.rec_head(h), self.seg_head(hs)
        if theta is not None:
            rec = SpatialTransformer.unwarp(rec, theta)
            seg = SpatialTransformer.unwarp(seg, theta)
        return {"rec": rec, "seg": seg, "z": z}
