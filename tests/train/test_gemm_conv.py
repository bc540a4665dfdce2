"""The stride-2 convolutions whose slow oneDNN passes are matrix products (train/gemm_conv)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import train.gemm_conv as gc
from train.gemm_conv import (
    GemmConv2d,
    GemmConvTranspose2d,
    Plan,
    conv_product,
    im2col,
    plan,
    weight_grad,
)


@pytest.mark.parametrize("transposed", [False, True])
def test_weight_grad_is_oneDNNs_in_fp32(transposed):
    torch.manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(3, 5, 8, 6).to(memory_format=cl)
    shape, out_hw = ((5, 7, 4, 4), (16, 12)) if transposed else ((7, 5, 4, 4), (4, 3))
    w = torch.randn(shape)
    gy = torch.randn(3, 7, *out_hw).to(memory_format=cl)
    ref = torch.ops.aten.convolution_backward(gy, x, w, None, [2, 2], [1, 1], [1, 1], transposed,
                                              [0, 0], 1, [False, True, False])[1]
    torch.testing.assert_close(weight_grad(x, gy, transposed), ref, rtol=1e-4, atol=1e-4)


def test_conv_product_is_the_convolution_in_fp32():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, 6).to(memory_format=torch.channels_last)
    w = torch.randn(7, 5, 4, 4)
    y = conv_product(im2col(x), w, tuple(x.shape))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, F.conv2d(x, w, None, 2, 1), rtol=1e-4, atol=1e-4)


def test_the_rules_at_the_textbook_and_default_shapes():
    # (transposed, c_in, c_out, input pixels, bf16, ATen's kernels) -> both passes or none
    yes, no = Plan(True, True), Plan(False, False)
    assert plan(False, 256, 512, 8 * 8, True, "AVX512") == yes  # D's deepest, 64 px, AMX
    assert plan(True, 256, 128, 8 * 8, True, "AVX512") == yes
    assert plan(True, 128, 64, 16 * 16, True, "AVX512") == no  # shallow: oneDNN
    assert plan(True, 512, 256, 4 * 4, False, "AVX512") == yes  # G's deepest, fp32
    assert plan(False, 128, 256, 8 * 8, False, "AVX512") == no  # narrower: oneDNN
    assert plan(False, 64, 128, 32 * 32, False, "AVX2") == yes  # AVX2 fp32: every layer
    assert plan(False, 64, 128, 8 * 8, True, "AVX2") == no  # emulated bf16: not measured
    assert plan(False, 256, 512, 8 * 8, False, "NEON") == no  # other CPUs: not measured


def _grads(module, x, dtype):
    module.zero_grad()
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y = module(x)
    (y.float() ** 2).sum().backward()
    return y, x.grad, module.weight.grad


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("cls,plain", [(GemmConv2d, nn.Conv2d), (GemmConvTranspose2d,
                                                                  nn.ConvTranspose2d)])
def test_product_passes_match_the_plain_module(cls, plain, dtype, monkeypatch):
    torch.manual_seed(0)
    ours = cls(16, 8).to(memory_format=torch.channels_last)
    ref = plain(16, 8, 4, 2, 1, bias=False).to(memory_format=torch.channels_last)
    ref.load_state_dict(ours.state_dict())  # same parameters, same names
    x = torch.randn(4, 16, 4, 4).to(memory_format=torch.channels_last)
    monkeypatch.setattr(gc, "plan", lambda *a, **k: Plan(True, True))  # every pass a product
    taken = []
    for name in ("weight_grad", "conv_product"):
        real = getattr(gc, name)
        monkeypatch.setattr(gc, name, lambda *a, real=real, name=name: taken.append(name)
                            or real(*a))
    y, gx, gw = _grads(ours, x, dtype)
    y0, gx0, gw0 = _grads(ref, x, dtype)
    assert sorted(set(taken)) == ["conv_product", "weight_grad"], taken
    assert gw.dtype == torch.float32 and y.dtype == dtype
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(y, y0, rtol=tol, atol=tol)
    torch.testing.assert_close(gx, gx0, rtol=tol, atol=tol)
    torch.testing.assert_close(gw, gw0, rtol=tol, atol=tol * gw0.abs().max().item())


def test_the_reused_patch_buffer_serves_layers_and_calls_in_turn(monkeypatch):
    # two layers, two forwards before one backward (a D step's real and fake batches): every
    # im2col lands in one per-thread buffer, which must never hold patches still to be read
    torch.manual_seed(0)
    ours = nn.Sequential(GemmConv2d(3, 8), nn.ReLU(), GemmConv2d(8, 16))
    ref = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1, bias=False), nn.ReLU(),
                        nn.Conv2d(8, 16, 4, 2, 1, bias=False))
    ref.load_state_dict(ours.state_dict())
    monkeypatch.setattr(gc, "plan", lambda *a, **k: Plan(True, True))
    a, b = torch.randn(2, 3, 16, 16), torch.randn(5, 3, 8, 8)  # different sizes: buffer regrows
    for net in (ours, ref):
        (net(a).square().sum() + net(b).abs().sum()).backward()
    for p, p0 in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p0.grad, rtol=1e-4, atol=1e-4)


def test_plain_path_where_no_rule_applies(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "weight_grad", lambda *a: calls.append(1))
    monkeypatch.setattr(gc, "conv_product", lambda *a: calls.append(1))
    monkeypatch.setattr(gc, "_isa", lambda: "AVX512")  # where fp32 narrow layers stay oneDNN's
    conv = GemmConv2d(4, 8)
    x = torch.randn(2, 4, 8, 8)
    (conv(x) ** 2).sum().backward()  # fp32, narrow: oneDNN's own backward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # 32x32 input: above the rules' sizes
        (conv(torch.randn(2, 4, 32, 32)).float() ** 2).sum().backward()
    with torch.autocast("cpu", dtype=torch.float16):  # other autocast dtypes: plain
        (conv(x).float() ** 2).sum().backward()
    monkeypatch.setattr(gc, "plan", lambda *a, **k: Plan(True, True))
    monkeypatch.setattr(gc, "ENABLED", False)  # switched off (the bench's A/B)
    (conv(x) ** 2).sum().backward()
    assert not calls
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 2, 1))


def test_a_parametrized_weight_is_computed_once_per_forward():
    # spectral norm's power iteration runs at every read of the weight: one read per forward
    from torch.nn.utils import parametrize

    class Counting(nn.Module):
        calls = 0

        def forward(self, w):
            Counting.calls += 1
            return w

    conv = GemmConv2d(4, 8)
    parametrize.register_parametrization(conv, "weight", Counting())
    Counting.calls = 0  # registering evaluates it once
    x = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)  # the product path
        conv(torch.randn(2, 4, 32, 32))  # the plain one
    assert Counting.calls == 2
