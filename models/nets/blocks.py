"""Named building blocks: conv variants, norms, activations, an STN and the dilated context module.

Every choice is a name, as in MONAI (``conv="dilated"``, ``norm="instance"``, ``act="prelu"``),
so a network is configured from ``params.yaml`` without code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.kinds import ActKind, ConvKind, NormKind


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name (``group`` uses up to 8 groups dividing ``channels``)."""
    match kind:
        case "batch":
            return nn.BatchNorm2d(channels)
        case "instance":
            return nn.InstanceNorm2d(channels, affine=True)
        case "group":
            groups = max(g for g in (1, 2, 4, 8) if channels % g == 0)
            return nn.GroupNorm(groups, channels)
        case "none":
            return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def make_act(kind: ActKind) -> nn.Module:
    """An activation by name."""
    match kind:
        case "relu":
            return nn.ReLU(inplace=True)
        case "leaky_relu":
            return nn.LeakyReLU(0.2, inplace=True)
        case "prelu":
            return nn.PReLU()
        case "gelu":
            return nn.GELU()
        case "silu":
            return nn.SiLU(inplace=True)
        case "none":
            return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}")


class DepthwiseSeparableConv2d(nn.Module):
    """A per-channel (depthwise) conv followed by a 1×1 pointwise conv.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel_size: Side of the depthwise kernel.
        stride: Stride of the depthwise convolution.
        padding: Zero padding on each side.
        dilation: Dilation of the depthwise kernel.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int, dilation: int
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_ch, in_ch, kernel_size, stride, padding, dilation, groups=in_ch, bias=False
        )
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DeformConv2d(nn.Module):
    """Deformable convolution (Dai et al. 2017) built on ``grid_sample``.

    A plain conv predicts a 2-D offset for every kernel tap at every output pixel; the input is
    bilinearly sampled at the shifted taps and the kernel weights are applied to the samples.
    The offsets start at zero, so an untrained layer equals a standard conv.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel_size: Side of the kernel.
        stride: Stride.
        padding: Zero padding on each side.
        dilation: Spacing of the kernel taps before their offsets.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.k, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        taps = kernel_size * kernel_size
        self.offset = nn.Conv2d(in_ch, 2 * taps, kernel_size, stride, padding, dilation)
        nn.init.zeros_(self.offset.weight)
        if self.offset.bias is not None:
            nn.init.zeros_(self.offset.bias)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch * taps))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        offsets = self.offset(x)  # (B, 2*taps, Ho, Wo) as (dy, dx) pairs
        ho, wo = offsets.shape[-2:]
        dev, dt = x.device, x.dtype
        oy = torch.arange(ho, device=dev, dtype=dt) * self.stride - self.padding
        ox = torch.arange(wo, device=dev, dtype=dt) * self.stride - self.padding
        taps = torch.arange(self.k, device=dev, dtype=dt) * self.dilation
        ty, tx = torch.meshgrid(taps, taps, indexing="ij")
        # absolute sampling positions (B, taps, Ho, Wo) in pixels
        py = oy.view(1, 1, ho, 1) + ty.reshape(1, -1, 1, 1) + offsets[:, 0::2]
        px = ox.view(1, 1, 1, wo) + tx.reshape(1, -1, 1, 1) + offsets[:, 1::2]
        grid = torch.stack(
            (2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1), dim=-1
        )  # (B, taps, Ho, Wo, 2) in grid_sample's (x, y) order
        sampled = F.grid_sample(
            x, grid.view(b, -1, wo, 2), mode="bilinear", padding_mode="zeros", align_corners=True
        )  # (B, C, taps*Ho, Wo)
        sampled = sampled.view(b, c, -1, ho, wo).reshape(b, -1, ho * wo)  # (B, C*taps, Ho*Wo)
        out = torch.einsum("ok,bkn->bon", self.weight, sampled) + self.bias.view(1, -1, 1)
        return out.view(b, -1, ho, wo)


def make_conv(
    kind: ConvKind,
    in_ch: int,
    out_ch: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
) -> nn.Module:
    """A conv layer by name that keeps the spatial size at stride 1 (``transposed`` up-samples).

    ``dilated`` needs ``dilation > 1``; ``group`` needs ``groups`` dividing both channel counts;
    ``transposed`` multiplies the size by ``stride``.
    """
    pad = dilation * (kernel_size - 1) // 2
    match kind:
        case "standard":
            return nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, dilation)
        case "dilated":
            if dilation < 2:
                raise ValueError("conv 'dilated' needs dilation >= 2")
            return nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, dilation)
        case "depthwise_separable":
            return DepthwiseSeparableConv2d(in_ch, out_ch, kernel_size, stride, pad, dilation)
        case "group":
            if in_ch % groups or out_ch % groups:
                raise ValueError(f"groups={groups} must divide {in_ch} and {out_ch} channels")
            return nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, dilation, groups=groups)
        case "deformable":
            return DeformConv2d(in_ch, out_ch, kernel_size, stride, pad, dilation)
        case "transposed":
            if stride == 1:
                return nn.ConvTranspose2d(in_ch, out_ch, kernel_size, 1, pad, dilation=dilation)
            return nn.ConvTranspose2d(in_ch, out_ch, 2 * stride, stride, stride // 2)
    raise ValueError(f"unknown conv {kind!r}")


class ConvNormAct(nn.Sequential):
    """conv → norm → activation.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        conv: Kind of the 3×3 convolution: standard, dilated, depthwise_separable, group,
            deformable or transposed.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
        stride: Stride of the convolution.
        dilation: Its dilation.
        groups: Its groups (the group kind).
    """

    def __init__(  # noqa: PLR0913 - a network block: each argument a documented choice, as in MONAI
        self,
        in_ch: int,
        out_ch: int,
        conv: ConvKind = "standard",
        norm: NormKind = "batch",
        act: ActKind = "relu",
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            make_conv(conv, in_ch, out_ch, 3, stride, dilation, groups),
            make_norm(norm, out_ch),
            make_act(act),
        )


class SpatialTransformer(nn.Module):
    """STN front end (Jaderberg et al. 2015): a localisation net predicts an affine warp.

    The last layer starts at zero weight and identity bias, so the warp starts as the identity.
    ``unwarp`` maps an output on the warped grid back onto the input grid.

    Args:
        in_ch: Input channels.
        hidden: Width of the localisation net's hidden linear layer.
    """

    def __init__(self, in_ch: int, hidden: int = 32) -> None:
        super().__init__()
        self.localisation = nn.Sequential(
            nn.Conv2d(in_ch, 8, 7, padding=3),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 10, 5, padding=2),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(10 * 16, hidden),
            nn.ReLU(inplace=True),
        )
        self.theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.theta(self.localisation(x)).view(-1, 2, 3)
        return self.warp(x, theta), theta

    @staticmethod
    def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Resample ``x`` onto the grid that ``theta`` warps it to."""
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    @staticmethod
    def unwarp(y: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Resample ``y`` (on the warped grid) back onto the original grid."""
        last = torch.tensor([0.0, 0.0, 1.0], device=theta.device, dtype=theta.dtype)
        full = torch.cat([theta, last.expand(theta.shape[0], 1, 3)], dim=1)
        inverse = torch.linalg.inv(full)[:, :2]
        grid = F.affine_grid(inverse, list(y.shape), align_corners=False)
        return F.grid_sample(y, grid, align_corners=False)


class DilatedContext(nn.Module):
    """Yu & Koltun's context module: 3×3 convs with growing dilation, same size in and out.

    Args:
        channels: Channels in and out.
        dilations: Dilation of each 3×3 convolution, in order.
        norm: Normalisation after each convolution: batch, instance, group or none.
        act: Activation: relu, leaky_relu, prelu, gelu, silu or none.
    """

    def __init__(
        self,
        channels: int,
        dilations: Sequence[int] = (1, 2, 4, 8),
        norm: NormKind = "batch",
        act: ActKind = "relu",
    ) -> None:
        super().__init__()
        if not dilations or min(dilations) < 1:
            raise ValueError(f"dilations must be positive, got {list(dilations)}")
        self.dilations = list(dilations)
        self.layers = nn.Sequential(
            *(ConvNormAct(channels, channels, "standard", norm, act, dilation=d) for d in dilations)
        )

    @property
    def receptive_field(self) -> int:
        """Side of the input window one output pixel sees: 1 + Σ 2·dilation."""
        return 1 + sum(2 * d for d in self.dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PixelPath(nn.Sequential):
    """Each pixel's bands alone, at full resolution: 1×1 convolutions with an activation,
    what a per-pixel classifier (a forest on band values) sees, beside a network's context.

    Args:
        in_channels: Bands of a tile.
        width: Channels of each 1×1 layer (the path's output).
        layers: Number of 1×1 layers.
        act: Activation after each layer.
    """

    def __init__(
        self, in_channels: int, width: int, layers: int = 2, act: ActKind = "relu"
    ) -> None:
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Conv2d(in_channels if i == 0 else width, width, 1), make_act(act)]
        super().__init__(*blocks)
        self.out_channels = width
