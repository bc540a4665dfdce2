"""The hardware's bound on training speed: a step's counted FLOPs over this CPU's matrix-product
peak, so a throughput figure can say how far it is from what the cores allow.

A DCGAN step is ~85% convolutions and products; no implementation runs them faster than a large
dense matrix product runs on the same cores at the same dtype, in whichever library (MKL's
matmul, oneDNN's 1x1 convolution) is faster there. `bound_images_per_s` is the speed
of a step whose only work is its FLOPs at that peak (nothing else: no BatchNorm, activations,
Adam, copies), so a real step stays below it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

# A square product large enough to reach the kernel's peak, small enough to time in seconds
PEAK_N = 2048


def timed(fn: Callable[[], object], min_seconds: float, min_reps: int) -> float:
    """Median seconds of one call, after warm-up, over at least min_reps / min_seconds."""
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(device: str, n: int, min_seconds: float, dtype=None) -> float:
    """GFLOP/s of an n x n x n matrix product on `device` at `dtype` (fp32 if None; on CPU that
    is MKL's kernel in fp32, oneDNN's in bf16): the median call, timed as `timed` does."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def step() -> None:
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()

    return 2 * n**3 / timed(step, min_seconds, 3) / 1e9


def conv_gemm_gflops(n: int, min_seconds: float, dtype=None) -> float:
    """GFLOP/s of the same n x n x n product as a 1x1 convolution on CPU: oneDNN's kernel at any
    dtype. On AMD, MKL's fp32 products run below oneDNN's convolutions, so a matmul alone would
    put the peak under what the step's convolutions reach."""
    import torch
    import torch.nn.functional as F

    dtype = dtype or torch.float32
    x = torch.randn(1, n, n, 1).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1).to(dtype).contiguous(memory_format=torch.channels_last)
    return 2 * n**3 / timed(lambda: F.conv2d(x, w), min_seconds, 3) / 1e9


def step_gflop_per_image(trainer, groups, warmup: int = 2) -> float:
    """GFLOP per image of one training step of `trainer` (both networks, all D steps, as
    torch.utils.flop_counter counts the convolutions and matrix products it dispatches)."""
    from torch.utils.flop_counter import FlopCounterMode

    for i in range(warmup):
        trainer.train_step(groups[i])
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(groups[warmup])
    return counter.get_total_flops() / trainer.cfg.batch_size / 1e9


def ceiling(trainer, groups) -> dict:
    """The bound for `trainer` (a train.loop.Trainer on CPU, with its epoch's batches `groups`) on
    this CPU: GFLOP per image, the product peak at the dtype its precision picks, and the images/s
    of a step of nothing but those FLOPs at that peak."""
    import torch

    from train.precision import PRECISION_NAMES, autocast_dtype

    autocast = autocast_dtype(trainer.cfg.precision, torch.device("cpu"))
    gflop = step_gflop_per_image(trainer, groups)
    matmul = round(matmul_gflops("cpu", PEAK_N, 2.0, autocast), 1)
    conv = round(conv_gemm_gflops(PEAK_N, 2.0, autocast), 1)
    peak = max(matmul, conv)  # the faster library's: a step may use either
    return {"precision": PRECISION_NAMES[autocast], "gflop_per_image": round(gflop, 3),
            f"matmul_{PEAK_N}_gflops": matmul, f"conv1x1_{PEAK_N}_gflops": conv,
            "bound_images_per_s": round(peak / gflop, 1)}
