#!/usr/bin/env python3
"""Per layer of DCGAN's G and D: which of train/gemm_conv's passes (oneDNN's or a matrix product)
is faster on this CPU, beside the pass `gemm_conv.plan` picks.

For each (transposed) stride-2 convolution of the textbook configuration (64 px, batch 64) and of
`gan train`'s default one (32 px, batch 128), at fp32 and, on a CPU with native bf16, at bf16
autocast, it times the layer's forward and its backward (input and weight gradients, as the D
step asks for them) under each of the four plans: the plain module (all oneDNN), the convolution
direction as a product, the weight gradient as a product, and both. Medians of --reps calls each.
Prints one JSON object; `best` is the fastest plan per layer (forward + backward), `rule` the one
`plan` picks for the kernels `gemm_conv.kernels()` names.

To see AVX2 kernels on an AVX-512 CPU, cap all three kernel libraries (oneDNN, ATen, and MKL,
which does torch's fp32 matrix products and ignores the other two):
ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2.

    python bench/conv_passes.py [--reps 9]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # as a script or as python -m bench.conv_passes

import torch  # noqa: E402
from machine import machine  # noqa: E402

import train.gemm_conv as gc  # noqa: E402
from train.model import Discriminator, Generator  # noqa: E402

PLANS = {"onednn": gc.Plan(False, False), "conv": gc.Plan(True, False),
         "weight": gc.Plan(False, True), "both": gc.Plan(True, True)}
CONFIGS = {"textbook-64px": (64, 64), "default-32px": (32, 128)}  # image size, batch


def layers(size: int, batch: int) -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    """(name, module, input shape) of every GemmConv layer of G and D at ngf = ndf = 64."""
    g, d = Generator(100, 64, 1, size), Discriminator(64, 1, size)
    found: list[tuple[torch.nn.Module, tuple[int, ...]]] = []
    for net, x in ((g, torch.randn(batch, 100)), (d, torch.randn(batch, 1, size, size))):
        hooks = [m.register_forward_hook(lambda m, a, y: found.append((m, tuple(a[0].shape))))
                 for m in net.modules()
                 if isinstance(m, (gc.GemmConv2d, gc.GemmConvTranspose2d))]
        with torch.no_grad():
            net(x)
        for h in hooks:
            h.remove()
    return [(f"{'G' if isinstance(m, torch.nn.ConvTranspose2d) else 'D'} {m.in_channels}->"
             f"{m.out_channels} on {s[-1]}x{s[-1]}", m, s) for m, s in found]


def time_plan(m: torch.nn.Module, x: torch.Tensor, bf16: bool, reps: int) -> dict:
    """Forward and backward medians (ms) of one layer under whatever plan is in force, each pass
    timed on its own in every repetition, after 3 untimed ones (oneDNN builds its primitives at
    the first call of a shape)."""
    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return m(x)

    gy = torch.randn_like(forward())
    fwd, bwd = [], []
    for i in range(3 + reps):
        start = time.perf_counter()
        y = forward()
        mid = time.perf_counter()
        y.backward(gy)
        if i >= 3:
            fwd.append(mid - start)
            bwd.append(time.perf_counter() - mid)
    return {"forward_ms": round(sorted(fwd)[reps // 2] * 1e3, 3),
            "backward_ms": round(sorted(bwd)[reps // 2] * 1e3, 3)}


def time_layer(m: torch.nn.Module, shape: tuple[int, ...], bf16: bool, reps: int) -> dict:
    """{plan: {"forward_ms", "backward_ms"}} for one layer, forcing each plan in turn."""
    m = m.to(memory_format=torch.channels_last).requires_grad_(True)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)  # every middle layer passes a gradient on to the one before
    real_plan, out = gc.plan, {}
    try:
        for name, p in PLANS.items():
            gc.plan = lambda *a, p=p, **k: p
            out[name] = time_plan(m, x, bf16, reps)
    finally:
        gc.plan = real_plan
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    torch.manual_seed(0)
    dtypes = [False] + ([True] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else [])
    report: dict = {"benchmark": "conv_passes", "machine": machine("cpu"),
                    "kernels": gc.kernels(), "results": {}}
    for bf16 in dtypes:
        for config, (size, batch) in CONFIGS.items():
            rows = {}
            for name, m, shape in layers(size, batch):
                t = time_layer(m, shape, bf16, args.reps)
                total = {k: v["forward_ms"] + v["backward_ms"] for k, v in t.items()}
                rule = gc.plan(isinstance(m, torch.nn.ConvTranspose2d), m.in_channels,
                               m.out_channels, shape[-2] * shape[-1], bf16, gc.kernels())
                rows[name] = {**t, "best": min(total, key=total.get),
                              "rule": next(k for k, v in PLANS.items() if v == rule)}
            report["results"][f"{'bf16' if bf16 else 'fp32'} {config}"] = rows
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
