"""The autocast precision of a run: which dtype `--precision` means on a device."""

from __future__ import annotations

import torch

# The --precision word of each autocast dtype, for the log (not "torch.bfloat16").
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. auto: bf16 on CPUs with native bf16 only; fp32 on
    CUDA, where DCGAN-sized models are launch-bound and bf16's casts cost more than they save
    (H100, 32 px, compiled, no channels_last: 14.6k img/s fp32 vs 8.9k bf16)."""
    if precision == "auto":
        native = device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        precision = "bf16" if native else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
