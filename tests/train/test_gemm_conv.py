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
    kernels,
    plan,
    weight_grad,
)


def _all_products(monkeypatch) -> None:
    """Every pass a product, wherever the layer and the CPU."""
    monkeypatch.setattr(gc, "plan", lambda *a, **k: Plan(True, True))


def _spy(monkeypatch, name: str, calls: list) -> None:
    """gemm_conv.<name> still runs, and appends its name to `calls` first."""
    real = getattr(gc, name)
    monkeypatch.setattr(gc, name, lambda *a: calls.append(name) or real(*a))


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
    assert plan(False, 256, 512, 8 * 8, True, "AVX512+AMX") == yes  # D's deepest, 64 px
    assert plan(True, 256, 128, 8 * 8, True, "AVX512+AMX") == yes
    assert plan(True, 128, 64, 16 * 16, True, "AVX512+AMX") == no  # shallow: oneDNN
    assert plan(False, 256, 512, 8 * 8, True, "AVX512") == no  # Intel bf16 without AMX: not
    # measured
    assert plan(True, 512, 256, 4 * 4, False, "AVX512") == yes  # G's deepest, fp32
    assert plan(True, 512, 256, 4 * 4, False, "AVX512+AMX") == yes
    assert plan(False, 128, 256, 8 * 8, False, "AVX512") == no  # narrower: oneDNN
    assert plan(False, 256, 512, 8 * 8, False, "AVX2") == yes  # AVX2 fp32: the deepest only
    assert plan(False, 128, 256, 16 * 16, False, "AVX2") == no
    assert plan(False, 64, 128, 8 * 8, True, "AVX2") == no  # emulated bf16: not measured
    assert plan(False, 256, 512, 8 * 8, False, "NEON") == no  # other CPUs: not measured


def test_the_rules_on_amd_take_the_weight_gradient_alone_in_bf16():
    # Zen 4: bf16 with AVX-512 kernels; fp32 keeps oneDNN (MKL's products did not gain a step)
    weight, no = Plan(conv=False, weight=True), Plan(False, False)
    isa = "AVX512/AMD"
    assert plan(True, 512, 256, 4 * 4, True, isa) == weight  # G's deepest, 64 px
    assert plan(True, 256, 128, 8 * 8, True, isa) == weight
    assert plan(False, 256, 512, 8 * 8, True, isa) == weight  # D's deepest, 64 px
    assert plan(False, 128, 256, 8 * 8, True, isa) == weight  # D's deepest, 32 px
    assert plan(False, 128, 256, 16 * 16, True, isa) == no  # larger input: even
    assert plan(True, 128, 64, 8 * 8, True, isa) == no  # narrower: lost
    for fp32_isa in ("AVX512/AMD", "AVX2/AMD"):
        assert plan(True, 512, 256, 4 * 4, False, fp32_isa) == no
        assert plan(False, 256, 512, 8 * 8, False, fp32_isa) == no
    assert plan(False, 256, 512, 8 * 8, True, "AVX2/AMD") == no  # emulated bf16


def test_kernels_name_the_aten_isa_and_what_changes_the_rules():
    isa = torch.backends.cpu.get_cpu_capability()
    assert kernels() in (isa, isa + "+AMX", isa + "/AMD")


def _grads(module, x, dtype):
    module.zero_grad()
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y = module(x)
    (y.float() ** 2).sum().backward()
    return y, x.grad, module.weight.grad


@pytest.mark.parametrize("both", [True, False], ids=["both", "weight-only"])  # AMD: weight only
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("cls,plain", [(GemmConv2d, nn.Conv2d), (GemmConvTranspose2d,
                                                                  nn.ConvTranspose2d)])
def test_product_passes_match_the_plain_module(cls, plain, dtype, both, monkeypatch):
    torch.manual_seed(0)
    ours = cls(16, 8).to(memory_format=torch.channels_last)
    ref = plain(16, 8, 4, 2, 1, bias=False).to(memory_format=torch.channels_last)
    ref.load_state_dict(ours.state_dict())  # same parameters, same names
    x = torch.randn(4, 16, 4, 6)  # non-square, and contiguous: the products make channels_last
    monkeypatch.setattr(gc, "plan", lambda *a, **k: Plan(conv=both, weight=True))
    taken: list = []
    for name in ("weight_grad", "conv_product"):
        _spy(monkeypatch, name, taken)
    y, gx, gw = _grads(ours, x, dtype)
    y0, gx0, gw0 = _grads(ref, x, dtype)
    assert sorted(set(taken)) == ["conv_product", "weight_grad"][not both:], taken
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
    _all_products(monkeypatch)
    a, b = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 16, 16)  # the second call regrows it
    for net in (ours, ref):
        (net(a).square().sum() + net(b).abs().sum()).backward()
    for p, p0 in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p0.grad, rtol=1e-4, atol=1e-4)


def test_patches_use_the_buffer_only_where_autograd_does_not_record_them():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.no_grad():  # a custom Function's forward, a plain backward
        cols = im2col(x, scratch=True)
    assert cols.data_ptr() == gc._scratch.buf.data_ptr()
    cols = im2col(x, scratch=True)  # a backward with create_graph=True: kept for the next one
    assert cols.data_ptr() != gc._scratch.buf.data_ptr() and cols.requires_grad
    torch.testing.assert_close(cols, im2col(x))


def test_a_gradient_penalty_differentiates_through_the_products(monkeypatch):
    # WGAN-GP and DRAGAN take D's input gradient with create_graph=True, then its weight gradient
    torch.manual_seed(0)
    from train.losses import gradient_penalty

    def critic(conv):
        return nn.Sequential(conv(3, 8), nn.LeakyReLU(0.2), conv(8, 16), nn.GroupNorm(1, 16),
                             nn.LeakyReLU(0.2), conv(16, 4), nn.Flatten(), nn.Linear(16, 1))

    def upsampler(deconv):  # transposed layers: their input gradient is a product here
        return nn.Sequential(deconv(3, 8), nn.ReLU(), deconv(8, 4), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 1))

    _all_products(monkeypatch)
    for build, ours_cls, plain, x in (
            (critic, GemmConv2d, nn.Conv2d, torch.randn(5, 3, 16, 16)),
            (upsampler, GemmConvTranspose2d, nn.ConvTranspose2d, torch.randn(5, 3, 2, 2))):
        ours = build(ours_cls)
        ref = build(lambda a, b, plain=plain: plain(a, b, 4, 2, 1, bias=False))
        ref.load_state_dict(ours.state_dict())
        for net in (ours, ref):
            gradient_penalty(net, x).backward()
        for p, p0 in zip(ours.parameters(), ref.parameters(), strict=True):
            if p0.grad is not None:  # the last bias does not move the input gradient
                torch.testing.assert_close(p.grad, p0.grad, rtol=1e-4, atol=1e-6)


def test_plain_path_where_no_rule_applies(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "weight_grad", lambda *a: calls.append(1))
    monkeypatch.setattr(gc, "conv_product", lambda *a: calls.append(1))
    monkeypatch.setattr(gc, "kernels", lambda: "AVX512+AMX")  # fp32 narrow layers stay oneDNN's
    conv = GemmConv2d(4, 8)
    x = torch.randn(2, 4, 8, 8)
    (conv(x) ** 2).sum().backward()  # fp32, narrow: oneDNN's own backward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # 32x32 input: above the rules' sizes
        (conv(torch.randn(2, 4, 32, 32)).float() ** 2).sum().backward()
    with torch.autocast("cpu", dtype=torch.float16):  # other autocast dtypes: plain
        (conv(x).float() ** 2).sum().backward()
    _all_products(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # inference: nothing needs a gradient
        conv.requires_grad_(False)(x)
    deconv = GemmConvTranspose2d(4, 8)  # an explicit output size: the plain module's job
    (deconv(x, output_size=[16, 16]) ** 2).sum().backward()
    monkeypatch.setattr(gc, "ENABLED", False)  # switched off (the bench's A/B)
    (conv.requires_grad_(True)(x) ** 2).sum().backward()
    assert not calls
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 2, 1))


def test_frozen_weights_still_pass_the_input_gradient_through_the_products(monkeypatch):
    # D in the G step: no weight gradients, the input's gradient flows back to G
    torch.manual_seed(0)
    ours, ref = GemmConv2d(4, 8), nn.Conv2d(4, 8, 4, 2, 1, bias=False)
    ref.load_state_dict(ours.state_dict())
    taken: list = []
    _all_products(monkeypatch)
    _spy(monkeypatch, "conv_product", taken)
    x = torch.randn(2, 4, 8, 8)
    _, gx, gw = _grads(ours.requires_grad_(False), x, torch.float32)
    _, gx0, _ = _grads(ref.requires_grad_(False), x, torch.float32)
    assert taken and gw is None
    torch.testing.assert_close(gx, gx0, rtol=1e-4, atol=1e-4)


def test_a_parametrized_weight_is_computed_once_per_forward(monkeypatch):
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
    taken: list = []
    _all_products(monkeypatch)
    _spy(monkeypatch, "conv_product", taken)
    conv(x)  # the product path
    monkeypatch.setattr(gc, "ENABLED", False)
    conv(x)  # the plain one
    assert taken == ["conv_product"] and Counting.calls == 2


def test_rules_of_another_cpu_replace_this_ones(monkeypatch):
    """RULES_OF (the bench's --gemm-ab --rules) makes a layer follow that kernel name's rules
    whatever this CPU is: Intel's fp32 rule takes D's deepest layer as products, AMD's none."""
    conv = GemmConv2d(256, 512)  # D 256->512 on 8x8: Intel's fp32 deepest-layer rule
    x = torch.randn(1, 256, 8, 8)
    for name, products in (("AVX2", Plan(True, True)), ("AVX2/AMD", None)):
        monkeypatch.setattr(gc, "RULES_OF", name)
        chosen = gc._plan_for(conv, x, transposed=False)
        assert (chosen and chosen[0]) == products, name
