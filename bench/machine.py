"""What a bench's figures depend on, for its JSON: the CPU, its vector capability and native
bf16, the precision and matrix-product kernels `gan train` picks there, and any cap put on the
kernel libraries (bench/train_throughput.py, bench/conv_passes.py)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# What caps the kernel libraries below the CPU's ISA (oneDNN, ATen, MKL: torch's fp32 matmuls)
CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def machine(device: str) -> dict:
    """What the figures depend on: the CPU's vector capability, whether it has native bf16, and
    the precision `gan train --precision auto` picks on `device` (bf16 only with native bf16)."""
    import torch

    from train import gemm_conv
    from train.precision import PRECISION_NAMES, autocast_dtype

    return {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu_name(),
            "cores": os.cpu_count(),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "precision_auto": PRECISION_NAMES[autocast_dtype("auto", torch.device(device))],
            "gemm_conv_kernels": gemm_conv.kernels(),
            "kernel_caps": {k: os.environ[k] for k in CAPS if k in os.environ},
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def cpu_name() -> str:
    """/proc/cpuinfo's model name with its family and model numbers ("AMD EPYC (family 25 model
    1)": a VM's name can be as bare as that, and the numbers tell Zen 3 from Zen 4); the
    platform's processor name where there is no /proc/cpuinfo. Needs no torch (serving benches)."""
    try:
        rows = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        rows = []
    first = {}
    for key, _, value in (r.partition(":") for r in rows):
        first.setdefault(key.strip(), value.strip())
    name = first.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in first and "model" in first:
        return f"{name} (family {first['cpu family']} model {first['model']})"
    return name
