"""Named blocks: every conv variant, the STN, and the dilated context's receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tessera.models.nets.blocks import (
    DeformConv2d,
    DilatedContext,
    SpatialTransformer,
    make_conv,
    make_norm,
)
from tessera.models.nets.seg_nets import SegAutoEncoder


@pytest.mark.parametrize(
    ("kind", "stride", "dilation", "groups", "out_hw"),
    [
        ("standard", 1, 1, 1, 20),
        ("standard", 2, 1, 1, 10),
        ("dilated", 1, 2, 1, 20),
        ("dilated", 1, 4, 1, 20),
        ("depthwise_separable", 1, 1, 1, 20),
        ("depthwise_separable", 2, 1, 1, 10),
        ("group", 1, 1, 4, 20),
        ("deformable", 1, 1, 1, 20),
        ("deformable", 2, 1, 1, 10),
        ("transposed", 2, 1, 1, 40),
        ("transposed", 1, 1, 1, 20),
    ],
)
def test_conv_variant_shapes(kind, stride, dilation, groups, out_hw):
    conv = make_conv(kind, 8, 12, 3, stride, dilation, groups)
    y = conv(torch.randn(2, 8, 20, 20))
    assert y.shape == (2, 12, out_hw, out_hw)
    y.sum().backward()
    assert all(p.grad is not None for p in conv.parameters())


def test_conv_variants_are_what_they_say():
    assert make_conv("dilated", 4, 4, dilation=3).dilation == (3, 3)
    assert make_conv("group", 8, 8, groups=4).groups == 4
    dw = make_conv("depthwise_separable", 8, 16)
    assert dw.depthwise.groups == 8 and dw.pointwise.kernel_size == (1, 1)
    with pytest.raises(ValueError, match="dilation"):
        make_conv("dilated", 4, 4, dilation=1)
    with pytest.raises(ValueError, match="groups"):
        make_conv("group", 6, 8, groups=4)


def test_deformable_conv_with_zero_offsets_equals_a_standard_conv():
    torch.manual_seed(0)
    deform = DeformConv2d(3, 5, 3, stride=1, padding=1)
    ref = nn.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        ref.weight.copy_(deform.weight.view(5, 3, 3, 3))
        ref.bias.copy_(deform.bias)
    x = torch.randn(2, 3, 9, 11)
    torch.testing.assert_close(deform(x), ref(x), atol=1e-5, rtol=1e-5)


def test_deformable_offsets_move_the_samples():
    deform = DeformConv2d(1, 1, 1, stride=1, padding=0)
    with torch.no_grad():
        deform.weight.fill_(1.0)
        deform.offset.bias.copy_(torch.tensor([0.0, 1.0]))  # every tap one pixel to the right
    x = torch.arange(25.0).view(1, 1, 5, 5)
    y = deform(x)
    torch.testing.assert_close(y[0, 0, :, :4], x[0, 0, :, 1:])


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_norms_by_name(norm):
    layer = make_norm(norm, 8)
    assert layer(torch.randn(2, 8, 4, 4)).shape == (2, 8, 4, 4)


def test_stn_starts_as_identity_and_warps_when_theta_changes():
    stn = SpatialTransformer(3)
    x = torch.randn(2, 3, 16, 16)
    warped, theta = stn(x)
    torch.testing.assert_close(warped, x, atol=1e-5, rtol=1e-5)
    assert theta.shape == (2, 2, 3)
    with torch.no_grad():
        stn.theta.bias.copy_(torch.tensor([0.5, 0, 0, 0, 0.5, 0]))  # zoom in 2x
    zoomed, theta = stn(x)
    assert not torch.allclose(zoomed, x, atol=1e-3)
    back = SpatialTransformer.unwarp(zoomed, theta)
    assert back.shape == x.shape


def test_seg_ae_with_stn_keeps_outputs_on_the_input_grid():
    net = SegAutoEncoder(3, 4, 3, widths=[8, 16], latent_channels=4, dilations=[1, 2], stn=True)
    out = net(torch.randn(2, 3, 32, 32))
    assert out["rec"].shape == (2, 3, 32, 32) and out["seg"].shape == (2, 4, 32, 32)


def measured_receptive_field(module: nn.Module, size: int = 65) -> int:
    """Width of the input region with a non-zero gradient for the centre output pixel."""
    torch.manual_seed(0)
    for p in module.parameters():  # positive weights: no accidental cancellation
        nn.init.uniform_(p, 0.1, 0.2)
    module.eval()
    x = torch.zeros(1, module.layers[0][0].in_channels, size, size, requires_grad=True)
    y = module(x + 1.0)
    y[0, 0, size // 2, size // 2].backward()
    hit = x.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(hit.any(1)).flatten()
    cols = torch.nonzero(hit.any(0)).flatten()
    assert int(rows[-1] - rows[0]) == int(cols[-1] - cols[0])
    return int(rows[-1] - rows[0]) + 1


@pytest.mark.parametrize(
    ("dilations", "expected"), [([1], 3), ([1, 2], 7), ([1, 2, 4], 15), ([1, 2, 4, 8], 31)]
)
def test_dilated_context_receptive_field_matches_the_gradient(dilations, expected):
    ctx = DilatedContext(2, dilations, norm="none", act="none")
    assert ctx.receptive_field == expected
    assert measured_receptive_field(ctx) == expected


@pytest.mark.parametrize(
    ("latent", "widths", "mode"),
    [(4, [8, 16], "undercomplete"), (16, [8, 16], "complete"), (64, [8, 16], "overcomplete")],
)
def test_capacity_mode_and_compression_ratio(latent, widths, mode):
    net = SegAutoEncoder(4, 2, 4, widths=widths, latent_channels=latent, dilations=[1])
    x = torch.randn(1, 4, 32, 32)
    z = net(x)["z"]
    assert net.compression_ratio == pytest.approx(z.numel() / x.numel())
    assert net.mode == mode


@pytest.mark.parametrize("skips", ["none", "seg", "all"])
def test_skips_keep_the_outputs_on_the_input_grid(skips):
    torch.manual_seed(0)
    net = SegAutoEncoder(3, 4, 3, [8, 16, 32], 8, [1, 2], skips=skips, dropout=0.1).eval()
    out = net(torch.randn(2, 3, 32, 32))
    assert out["seg"].shape == (2, 4, 32, 32) and out["rec"].shape == (2, 3, 32, 32)
    assert out["z"].shape == (2, 8, 8, 8)
    assert (net.seg_decoder is not None) == (skips == "seg")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net.encode(x), net(x)["z"])  # embeddings skip the decoders, same z


def test_seg_skips_reach_the_segmentation_but_never_the_reconstruction():
    """With skips="seg" the reconstruction depends on the input only through the latent."""
    torch.manual_seed(0)
    net = SegAutoEncoder(2, 3, 2, [8, 16], 4, [1], norm="none", skips="seg").eval()
    x = torch.randn(1, 2, 16, 16, requires_grad=True)
    out = net(x)
    (g_rec,) = torch.autograd.grad(out["rec"].sum(), out["z"], retain_graph=True)
    assert g_rec.abs().sum() > 0
    # the seg head sees the stem's full-resolution features: a pixel's own value moves its
    # class scores directly, beyond what passes the 2× down-sampled bottleneck
    skipless = SegAutoEncoder(2, 3, 2, [8, 16], 4, [1], norm="none", skips="none").eval()
    skipless.load_state_dict(net.state_dict(), strict=False)
    assert not torch.equal(net(x)["seg"], skipless(x)["seg"])
    assert torch.equal(net(x)["rec"], skipless(x)["rec"])  # same weights, same bottleneck path


def test_the_pixel_path_sees_each_pixel_alone_and_reaches_the_segmentation_head():
    import torch

    from tessera.models.nets.blocks import PixelPath
    from tessera.models.nets.seg_nets import SegAutoEncoder

    torch.manual_seed(0)
    path = PixelPath(3, 8)
    x = torch.randn(1, 3, 16, 16)
    y = x.clone()
    y[0, :, 5, 7] += 1.0
    changed = (path(x) - path(y)).abs().sum(dim=1)[0] > 0
    assert changed[5, 7] and changed.sum() == 1  # that pixel, and no neighbour
    net = SegAutoEncoder(3, 4, 3, [8, 16], 8, [1, 2], norm="none", skips="seg", pixel_path=8)
    assert net.seg_head.in_channels == net.decoder.out_channels + 8
    out = net(x)
    assert out["seg"].shape == (1, 4, 16, 16) and out["rec"].shape == (1, 3, 16, 16)
