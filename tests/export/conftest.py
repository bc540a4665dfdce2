"""Real short training runs (the Fashion-MNIST test split, 8-channel models, a few steps) and the
models exported from them, built once per test session and shared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from export.artifact import ExportResult, export
from export.config import ExportConfig

# Tiny but real: enough steps for BatchNorm statistics and weights to move away from their init.
TINY: dict[str, Any] = {"split": "test", "ngf": 8, "ndf": 8, "batch_size": 16, "max_steps": 6,
                        "log_every": 3, "num_samples": 4, "device": "cpu", "precision": "fp32"}
SIZES = (32, 64, 128)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """image size -> the run directory of a finished short training run at that size."""
    from train.loop import run

    root = tmp_path_factory.mktemp("runs")
    return {size: run({**TINY, "image_size": size}, out=str(root / f"run{size}"))
            for size in SIZES}


@pytest.fixture(scope="session")
def exported(runs: dict[int, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[..., ExportResult]:
    """exported(size, output="float", precision="fp32") -> the checked export, made once."""
    root = tmp_path_factory.mktemp("models")
    cache: dict[tuple[int, str, str], ExportResult] = {}

    def get(size: int, output: str = "float", precision: str = "fp32") -> ExportResult:
        key = (size, output, precision)
        if key not in cache:
            out = root / f"g{size}-{output}-{precision}" / "model.onnx"
            cache[key] = export(ExportConfig(checkpoint=str(runs[size]), out=str(out),
                                             output=output, precision=precision))
        return cache[key]

    return get
