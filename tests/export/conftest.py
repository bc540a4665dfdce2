"""Real short training runs (8-channel models, a few steps) and the models exported from them,
built once per test session and shared.

The runs train on the real Fashion-MNIST test split (Debian's dataset-fashion-mnist, which
`make setup` installs). Where those files are missing (a lent GPU machine, say) they train on a
folder of generated grey-scale images instead, through the same trainer and data pipeline: parity
depends on the weights and the graph, not on what the images show.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from export.artifact import ExportResult, export
from export.config import ExportConfig

# fp32 unless GAN_TEST_PRECISION says otherwise (tests/conftest.py); tests whose expectations
# need fp32 pin it themselves.
TEST_PRECISION = os.environ.get("GAN_TEST_PRECISION", "fp32")

# Tiny but real: enough steps for BatchNorm statistics and weights to move away from their init.
TINY: dict[str, Any] = {"split": "test", "ngf": 8, "ndf": 8, "batch_size": 8, "max_steps": 4,
                        "log_every": 2, "num_samples": 4, "device": "cpu", "precision": TEST_PRECISION,
                        "compile": False}
SIZES = (32, 64, 128)
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def image_folder(folder: Path, count: int = 32) -> Path:
    """`count` 28x28 grey images of random bright rectangles, as PNG files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        img = np.zeros((28, 28), np.uint8)
        top, left = rng.integers(0, 14, 2)
        h, w = rng.integers(6, 14, 2)
        img[top:top + h, left:left + w] = rng.integers(128, 256)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """image size -> the run directory of a finished short training run at that size."""
    from train.loop import run

    root = tmp_path_factory.mktemp("runs")
    data: dict[str, Any] = {}
    if not FASHION_MNIST.is_file():
        data = {"dataset": "folder", "data_dir": str(image_folder(root / "images")),
                "channels": 1, "split": "train"}
    return {size: run({**TINY, **data, "image_size": size}, out=str(root / f"run{size}"))
            for size in SIZES}


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished short conditional run at 32 px (10 Fashion-MNIST classes, or 2 folders)."""
    from train.loop import run

    root = tmp_path_factory.mktemp("cond")
    data: dict[str, Any] = {}
    if not FASHION_MNIST.is_file():
        for name in ("boxes", "more-boxes"):
            image_folder(root / "classes" / name, count=16)
        data = {"dataset": "folder", "data_dir": str(root / "classes"), "channels": 1,
                "split": "train"}
    return run({**TINY, **data, "image_size": 32, "conditional": True}, out=str(root / "run"))


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
