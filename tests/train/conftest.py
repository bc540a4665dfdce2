from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from train.loop import run

# fp32 unless GAN_TEST_PRECISION says otherwise (tests/conftest.py); tests whose expectations
# need fp32 pin it themselves.
TEST_PRECISION = os.environ.get("GAN_TEST_PRECISION", "fp32")

# A tiny real run: the real Fashion-MNIST test split, 8-channel models, 32 px.
TINY: dict[str, Any] = {"split": "test", "ngf": 8, "ndf": 8, "batch_size": 16, "image_size": 32,
                        "log_every": 2, "checkpoint_every": 2, "keep_checkpoints": 2,
                        "num_samples": 16, "device": "cpu", "precision": TEST_PRECISION,
                        "compile": False}


def train_tiny(out: Path, **overrides: Any) -> Path:
    return run({**TINY, **overrides}, out=str(out))


def train_on_flat_folder(tmp_path: Path, **overrides: Any) -> Path:
    """A tiny run on a folder of 8 grey 28x28 images without class sub-folders (no labels)."""
    import numpy as np
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(8):
        Image.fromarray(np.full((28, 28), i * 30, np.uint8)).save(flat / f"{i}.png")
    return train_tiny(tmp_path / "run", dataset="folder", data_dir=str(flat), split="train",
                      batch_size=4, **overrides)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 4-step run shared by the tests that only read its outputs."""
    return train_tiny(tmp_path_factory.mktemp("run") / "run", max_steps=4)
