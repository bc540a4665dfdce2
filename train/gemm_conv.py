"""DCGAN's stride-2 4x4 convolutions with their weight gradient taken as one matrix product.

On CPUs with bf16 matrix units (AMX) oneDNN's backward-weights kernel for the deep, small-spatial
layers runs at 57-150 GFLOP/s while a bf16 matrix product of the same size runs at 400-1100
(2-core Xeon with AMX, batch 64: D's 256->512 layer on 8x8 took 60 ms in oneDNN, 10 ms as
im2col + mm). So in bf16 training those layers keep oneDNN for the forward pass and the input
gradient, and compute the weight gradient here. The modules are nn.Conv2d / nn.ConvTranspose2d
(same parameters, same state_dict, same export); the path is taken only where it measured faster
(bf16 on CPU, at most 16x16 input for a convolution, 8x8 for a transposed one, eager, gradient
wanted) and the plain module runs everywhere else. `docs/training.md` has the measurements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Largest input H*W that takes the product path (shallower layers: oneDNN measured faster,
# since their im2col copy is 4x a large activation).
CONV_MAX_PIXELS = 16 * 16
DECONV_MAX_PIXELS = 8 * 8


def im2col(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N * H/2 * W/2, 16 * C) patches of a 4x4 stride-2 pad-1 window, ordered
    (kh, kw, c): the order of a channels_last weight's (co, kh, kw, ci) memory."""
    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    patches = xp.unfold(1, 4, 2).unfold(2, 4, 2)  # (N, H/2, W/2, C, 4, 4), a view
    return patches.permute(0, 1, 2, 4, 5, 3).reshape(n * (h // 2) * (w // 2), 16 * c)


def rows(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N * H * W, C): a view for channels_last memory."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def weight_grad(x: torch.Tensor, gy: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The weight gradient of y = conv(x, w) (w: (Co, Ci, 4, 4)) or of y = conv_transpose(x, w)
    (w: (Ci, Co, 4, 4)), stride 2, padding 1, as one product over all N * pixels rows."""
    if transposed:  # the transposed conv is the adjoint of conv(., w): patches come from gy
        cols, left = im2col(gy), rows(x)  # (N*H*W, 16 Co), (N*H*W, Ci)
    else:
        cols, left = im2col(x), rows(gy)  # (N*Ho*Wo, 16 Ci), (N*Ho*Wo, Co)
    out = left.t() @ cols  # (w0, 16 * w1), (kh, kw, w1) order
    return out.view(out.shape[0], 4, 4, -1).permute(0, 3, 1, 2)  # (w0, w1, 4, 4)


class _GemmWeightGrad(torch.autograd.Function):
    """oneDNN forward and input gradient; the weight gradient by `weight_grad`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, transposed: bool) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.transposed = transposed
        conv = F.conv_transpose2d if transposed else F.conv2d
        return conv(x, w, None, 2, 1)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, w = ctx.saved_tensors
        gy = gy.contiguous(memory_format=torch.channels_last)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(
                gy, x, w, None, [2, 2], [1, 1], [1, 1], ctx.transposed, [0, 0], 1,
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = weight_grad(x, gy, ctx.transposed)  # bf16, as w
        return gx, gw, None


def _wanted(module: nn.Module, x: torch.Tensor, max_pixels: int) -> bool:
    """Whether this call takes the product path: bf16 autocast on CPU, training, eager. Reads the
    parameters, not `module.weight`: under a parametrization (spectral norm) every read of the
    weight recomputes it (a power iteration), and the forward reads it once."""
    return (x.device.type == "cpu" and torch.is_grad_enabled()
            and any(p.requires_grad for p in module.parameters())
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not torch.compiler.is_compiling()
            and x.shape[-2] * x.shape[-1] <= max_pixels)


def _run(x: torch.Tensor, w: torch.Tensor, transposed: bool) -> torch.Tensor:
    # autocast's casts, tracked by autograd (the fp32 weight gets its gradient through them)
    x, w = x.to(torch.bfloat16), w.to(torch.bfloat16)
    with torch.autocast("cpu", enabled=False):
        return _GemmWeightGrad.apply(x, w, transposed)


class GemmConv2d(nn.Conv2d):
    """nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False) whose bf16 weight gradient is one product."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _wanted(self, x, CONV_MAX_PIXELS):
            return _run(x, self.weight, transposed=False)
        return super().forward(x)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), likewise."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and _wanted(self, x, DECONV_MAX_PIXELS):
            return _run(x, self.weight, transposed=True)
        return super().forward(x, output_size)
