"""DCGAN's stride-2 4x4 convolutions with some of their training passes taken as matrix products.

oneDNN's convolution kernels leave speed on the table in DCGAN's middle layers: an im2col copy
(into one reused buffer) and one matrix product over all N * pixels rows measured faster for
(bench/conv_passes.py, 2 cores, forward / backward ms of one layer, batch 64, 64 px):

- bf16 with AMX (Xeon): D's 256->512 layer on 8x8, 7.6 / 34.2 in oneDNN, 5.9 / 15.9 as
  products (its backward-weights kernel is the slow part); G's 512->256 on 4x4, 10.9 / 28.1 ->
  10.6 / 10.7;
- fp32 (Intel, AVX2 and AVX-512 kernels): only the deepest layers; with AVX2 kernels G 512->256
  on 4x4 27.8 / 59.0 -> 26.4 / 48.0.
- on an AMD EPYC (Zen 4: AVX-512 bf16, no AMX), the weight gradient alone, of the deep layers:
  bf16 D 256->512 on 8x8, backward 38.5 -> 27.2 (fp32 products, which are MKL's, lose there to
  oneDNN's AVX-512 kernels; against its AVX2 ones some layers won alone, but whole training steps
  did not: 0.973-1.05x in three A/Bs, so fp32 keeps oneDNN there too).

The passes are `Plan.conv` (the one that is a plain strided convolution: a conv's forward, a
transposed conv's input gradient) and `Plan.weight` (the weight gradient); the other one (a
transposed conv's forward, a conv's input gradient) stays oneDNN's, since as products it measured
slower everywhere. Which layers take them is `plan`: fixed rules by ATen's kernel ISA and dtype,
so a seed gives the same run on the same kind of machine. The modules are nn.Conv2d /
nn.ConvTranspose2d (same parameters, state_dict and export), and the plain module runs wherever
no rule applies: CUDA, `--compile`, inference (nothing needs a gradient), other dtypes and CPUs.
`docs/training.md` has the measurements.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# c_in * c_out from which a deepest layer (8x8 conv input, 4x4 transposed-conv input) gains in
# fp32 (AVX2 and AVX-512 kernels): D 256->512 and G 512->256 at ngf = ndf = 64, 64 px.
DEEP_CHANNELS = 256 * 512
DEEPEST_PIXELS = {False: 8 * 8, True: 4 * 4}  # by `transposed`
# Largest input H*W that gains in bf16 (AMX): shallower layers' patches are 4x a large activation.
BF16_PIXELS = {False: 16 * 16, True: 8 * 8}
# On AMD (Zen 4), bf16 with AVX-512 kernels: the weight gradient alone, from
# c_in * c_out = 128 * 256 on inputs up to 8x8 (G 512->256, 256->128, D 256->512 at 64 px; G
# 256->128, D 128->256 at 32 px); narrower or larger layers were even or lost.
AMD_WEIGHT_CHANNELS = 128 * 256
AMD_WEIGHT_PIXELS = 8 * 8
# The kernel names `plan` has rules for (what `kernels()` returns on the CPUs measured)
KERNEL_NAMES = ("AVX2", "AVX512", "AVX512+AMX", "AVX2/AMD", "AVX512/AMD")
# False: the plain modules everywhere (bench/train_throughput.py --gemm-ab times both sides)
ENABLED = True
# One of KERNEL_NAMES: follow its rules instead of this CPU's (the bench's --gemm-ab --rules,
# to see whether a rule measured on one CPU gains on another)
RULES_OF: str | None = None


@dataclass(frozen=True)
class Plan:
    """Which passes of one call are matrix products; the others stay oneDNN's."""

    conv: bool
    """The pass that is a plain strided convolution with this weight: a conv's forward, a
    transposed conv's input gradient."""
    weight: bool
    """The weight gradient."""


def plan(transposed: bool, c_in: int, c_out: int, pixels: int, bf16: bool, isa: str) -> Plan:
    """The rules, for a layer of c_in -> c_out channels on an input of `pixels` = H * W, at bf16
    autocast or fp32, with the kernels `isa` names (`kernels()`). From bench/conv_passes.py,
    where each rule gained on every layer it covers; other
    CPUs (Arm, Intel's AVX-512 bf16 without AMX, emulated bf16, ...) were not measured and keep
    oneDNN everywhere."""
    if isa.endswith("/AMD"):  # Zen 4: oneDNN's bf16 backward-weights pass is the slow one there;
        # in fp32 (MKL's products) whole steps gained nowhere, with AVX-512 or AVX2 kernels
        measured = bf16 and isa == "AVX512/AMD"
        weight = pixels <= AMD_WEIGHT_PIXELS and c_in * c_out >= AMD_WEIGHT_CHANNELS
        return Plan(conv=False, weight=measured and weight)
    if bf16:
        both = isa == "AVX512+AMX" and pixels <= BF16_PIXELS[transposed]
    elif isa in ("AVX2", "AVX512", "AVX512+AMX"):
        both = pixels <= DEEPEST_PIXELS[transposed] and c_in * c_out >= DEEP_CHANNELS
    else:
        both = False
    return Plan(conv=both, weight=both)


class _Scratch(threading.local):
    """One reused byte buffer per thread for the im2col copies, which live for one pass each: a
    fresh 16-64 MB tensor costs a page fault per 4 KiB page at first touch, which measured as
    much as the copy itself (glibc maps and unmaps allocations this large every time)."""

    buf = torch.empty(0, dtype=torch.uint8)

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        n = math.prod(shape) * dtype.itemsize
        if self.buf.numel() < n:
            self.buf = torch.empty(n, dtype=torch.uint8)
        return self.buf[:n].view(dtype).view(shape)


_scratch = _Scratch()


def im2col(x: torch.Tensor, scratch: bool = False) -> torch.Tensor:
    """(N, C, H, W) -> (N * H/2 * W/2, 16 * C) patches of a 4x4 stride-2 pad-1 window, ordered
    (kh, kw, c): the order of a channels_last weight's (co, kh, kw, ci) memory. scratch: written
    into this thread's reused buffer, valid until the next scratch call (use it at once), unless
    autograd records this (a backward with create_graph=True: gradient penalties)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    patches = xp.unfold(1, 4, 2).unfold(2, 4, 2).permute(0, 1, 2, 4, 5, 3)  # (N,H/2,W/2,4,4,C)
    if not scratch or torch.is_grad_enabled():  # recorded for a double backward: a tensor of
        return patches.reshape(n * (h // 2) * (w // 2), 16 * c)  # its own, not the buffer
    out = _scratch.take(tuple(patches.shape), x.dtype)
    out.copy_(patches)
    return out.view(n * (h // 2) * (w // 2), 16 * c)


def rows(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N * H * W, C): a view for channels_last memory."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def conv_product(cols: torch.Tensor, w: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """conv(x, w) at stride 2, padding 1, from cols = im2col(x): w (Co, Ci, 4, 4) -> a
    channels_last (N, Co, H/2, W/2) for x of `shape` (N, Ci, H, W)."""
    n, _, h, wd = shape
    y = cols @ w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).t()  # (N*H/2*W/2, Co)
    return y.view(n, h // 2, wd // 2, -1).permute(0, 3, 1, 2)


def weight_grad(x: torch.Tensor, gy: torch.Tensor, transposed: bool,
                cols: torch.Tensor | None = None) -> torch.Tensor:
    """The weight gradient of y = conv(x, w) (w: (Co, Ci, 4, 4)) or of y = conv_transpose(x, w)
    (w: (Ci, Co, 4, 4)), stride 2, padding 1, as one product over all N * pixels rows. cols:
    im2col of x (conv) or of gy (transposed), when the caller has it already."""
    if transposed:  # the transposed conv is the adjoint of conv(., w): patches come from gy
        cols = im2col(gy, scratch=True) if cols is None else cols  # (N*H*W, 16 Co)
        left = rows(x)  # (N*H*W, Ci)
    else:
        cols = im2col(x, scratch=True) if cols is None else cols  # (N*Ho*Wo, 16 Ci)
        left = rows(gy)  # (N*Ho*Wo, Co)
    out = left.t() @ cols  # (w0, 16 * w1), (kh, kw, w1) order
    return out.view(out.shape[0], 4, 4, -1).permute(0, 3, 1, 2)  # (w0, w1, 4, 4)


class _GemmConv(torch.autograd.Function):
    """A conv or transposed conv whose passes named by `plan` are products, the rest oneDNN's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, transposed: bool, plan: Plan
                ) -> torch.Tensor:
        if plan.conv and not transposed:
            y = conv_product(im2col(x, scratch=True), w, tuple(x.shape))
        else:
            y = (F.conv_transpose2d if transposed else F.conv2d)(x, w, None, 2, 1)
        # the patches are made again in backward, not kept: 4x the input, for every layer
        ctx.save_for_backward(x, w)
        ctx.transposed, ctx.plan = transposed, plan
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, w = ctx.saved_tensors
        transposed, plan = ctx.transposed, ctx.plan
        want_x, want_w = ctx.needs_input_grad[:2]
        gy = gy.contiguous(memory_format=torch.channels_last)
        x_by_mm, w_by_mm = want_x and plan.conv and transposed, want_w and plan.weight
        # whatever is not a product comes from one oneDNN call
        mask = [want_x and not x_by_mm, want_w and not w_by_mm, False]
        gx, gw, _ = (torch.ops.aten.convolution_backward(
            gy, x, w, None, [2, 2], [1, 1], [1, 1], transposed, [0, 0], 1, mask)
            if any(mask) else (None, None, None))
        cols = None
        if x_by_mm:
            cols = im2col(gy, scratch=True)  # also the weight gradient's patches
            gx = conv_product(cols, w, tuple(gy.shape))
        if w_by_mm:
            gw = weight_grad(x, gy, transposed, cols)
        return gx, gw, None, None


@functools.cache
def kernels() -> str:
    """ATen's kernel ISA (torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, ...), with
    "+AMX" where the CPU has AMX tiles (bf16 matrix units) and "/AMD" on an AMD CPU, where the
    same ISA measured differently (MKL, which does torch's fp32 products, is slower there)."""
    isa = torch.backends.cpu.get_cpu_capability()
    if isa == "AVX512" and torch.cpu._is_amx_tile_supported():
        return isa + "+AMX"
    return isa + "/AMD" if _vendor() == "AuthenticAMD" else isa


def _vendor() -> str:
    """The CPU's vendor_id from /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"); "" elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _plan_for(module: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor, transposed: bool
              ) -> tuple[Plan, torch.dtype] | None:
    """This call's plan and compute dtype: on CPU, eager, with a gradient to take (D in the G step
    has frozen weights but passes its input's gradient on), under bf16 autocast or in plain fp32;
    None for the plain module. Reads the parameters, not `module.weight`: under a
    parametrization (spectral norm) every read of the weight recomputes it (a power iteration),
    and the forward reads it once."""
    if (not ENABLED or x.device.type != "cpu" or not torch.is_grad_enabled()
            or torch.compiler.is_compiling()
            or not (x.requires_grad or any(p.requires_grad for p in module.parameters()))):
        return None
    if torch.is_autocast_enabled("cpu"):
        if torch.get_autocast_dtype("cpu") != torch.bfloat16:
            return None
        dtype = torch.bfloat16
    elif x.dtype == torch.float32 and all(p.dtype == torch.float32 for p in module.parameters()):
        dtype = torch.float32
    else:
        return None
    p = plan(transposed, module.in_channels, module.out_channels, x.shape[-2] * x.shape[-1],
             bf16=dtype == torch.bfloat16, isa=RULES_OF or kernels())
    return (p, dtype) if p.conv or p.weight else None


def _run(x: torch.Tensor, w: torch.Tensor, transposed: bool, p: Plan, dtype: torch.dtype
         ) -> torch.Tensor:
    # autocast's casts (no-ops in fp32), tracked by autograd: the fp32 weight gets its gradient
    # through them
    x, w = x.to(dtype), w.to(dtype)
    with torch.autocast("cpu", enabled=False):
        return _GemmConv.apply(x, w, transposed, p)


class GemmConv2d(nn.Conv2d):
    """nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), with the passes `plan` names as products."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = _plan_for(self, x, transposed=False)
        if chosen is not None:
            return _run(x, self.weight, False, *chosen)
        return super().forward(x)


class GemmConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), likewise."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        chosen = None if output_size is not None else _plan_for(self, x, transposed=True)
        if chosen is not None:
            return _run(x, self.weight, True, *chosen)
        return super().forward(x, output_size)
