"""The stride-2 convolutions whose bf16 weight gradient is one matrix product (train/gemm_conv)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import train.gemm_conv as gc
from train.gemm_conv import GemmConv2d, GemmConvTranspose2d, weight_grad


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


def _grads(module, x):
    module.zero_grad()
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
    (y.float() ** 2).sum().backward()
    return y, x.grad, module.weight.grad


@pytest.mark.parametrize("cls,plain", [(GemmConv2d, nn.Conv2d), (GemmConvTranspose2d,
                                                                  nn.ConvTranspose2d)])
def test_bf16_path_matches_the_plain_module(cls, plain, monkeypatch):
    torch.manual_seed(0)
    ours = cls(16, 8).to(memory_format=torch.channels_last)
    ref = plain(16, 8, 4, 2, 1, bias=False).to(memory_format=torch.channels_last)
    ref.load_state_dict(ours.state_dict())  # same parameters, same names
    x = torch.randn(4, 16, 8, 8).to(memory_format=torch.channels_last)
    taken = []
    real = gc.weight_grad
    monkeypatch.setattr(gc, "weight_grad", lambda *a: taken.append(1) or real(*a))
    y, gx, gw = _grads(ours, x)
    y0, gx0, gw0 = _grads(ref, x)
    assert taken, "the product path was not taken in bf16 training"
    assert gw.dtype == torch.float32 and y.dtype == torch.bfloat16
    torch.testing.assert_close(y, y0)
    torch.testing.assert_close(gx, gx0, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(gw, gw0, rtol=2e-2, atol=2e-2 * gw0.abs().max().item())


def test_plain_path_outside_bf16_training_and_for_large_inputs(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "weight_grad", lambda *a: calls.append(1))
    conv = GemmConv2d(4, 8)
    x = torch.randn(2, 4, 8, 8)
    (conv(x) ** 2).sum().backward()  # fp32: oneDNN's own backward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # 32x32 input: above CONV_MAX_PIXELS
        (conv(torch.randn(2, 4, 32, 32)).float() ** 2).sum().backward()
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
