"""The hardware's bound on training speed: a step's counted FLOPs over this CPU's matrix-product
peak, so a throughput figure can say how far it is from what the cores allow.

A DCGAN step is ~85% convolutions and products; no implementation runs them faster than a large
dense matrix product runs on the same cores at the same dtype. `bound_images_per_s` is the speed
of a step whose only work is its FLOPs at that peak (nothing else: no BatchNorm, activations,
Adam, copies), so a real step stays below it.
"""

from __future__ import annotations

import time

# A square product large enough to reach the kernel's peak, small enough to time in seconds
PEAK_N = 2048


def matmul_gflops(dtype, n: int = PEAK_N, reps: int = 8, tries: int = 3) -> float:
    """GFLOP/s of an n x n x n matrix product at `dtype` (what torch's CPU kernels reach: MKL in
    fp32, oneDNN in bf16), the best of `tries` means over `reps` products."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return round(best, 1)


def step_gflop_per_image(trainer, groups, warmup: int = 2) -> float:
    """GFLOP per image of one training step of `trainer` (both networks, all D steps, as
    torch.utils.flop_counter counts the convolutions and matrix products it dispatches)."""
    from torch.utils.flop_counter import FlopCounterMode

    for i in range(warmup):
        trainer._train_step(groups[i])
    with FlopCounterMode(display=False) as counter:
        trainer._train_step(groups[warmup])
    return counter.get_total_flops() / trainer.cfg.batch_size / 1e9


def ceiling(trainer, groups) -> dict:
    """The bound for `trainer` (a train.loop.Trainer on CPU, with its epoch's batches `groups`) on
    this CPU: GFLOP per image, the product peak at the dtype its precision picks, and the images/s
    of a step of nothing but those FLOPs at that peak."""
    import torch

    from train.precision import PRECISION_NAMES, autocast_dtype

    autocast = autocast_dtype(trainer.cfg.precision, torch.device("cpu"))
    gflop = step_gflop_per_image(trainer, groups)
    peak = matmul_gflops(autocast or torch.float32)
    return {"precision": PRECISION_NAMES[autocast], "gflop_per_image": round(gflop, 3),
            f"matmul_{PEAK_N}_gflops": peak, "bound_images_per_s": round(peak / gflop, 1)}
