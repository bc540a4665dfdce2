from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from train.loop import run

# A tiny real run: the real Fashion-MNIST test split, 8-channel models, 32 px.
TINY: dict[str, Any] = {"split": "test", "ngf": 8, "ndf": 8, "batch_size": 16, "image_size": 32,
                        "log_every": 2, "checkpoint_every": 2, "keep_checkpoints": 2,
                        "num_samples": 16, "device": "cpu", "precision": "fp32",
                        "compile": False}


def train_tiny(out: Path, resume: bool = False, report: Any = None, **overrides: Any) -> Path:
    return run({**TINY, **overrides}, out=str(out), resume=resume, report=report)


def train_on_flat_folder(tmp_path: Path, **overrides: Any) -> Path:
    """A tiny run on a folder of 8 grey 28x28 images without class sub-folders (no labels)."""
    import numpy as np
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(8):
        Image.fromarray(np.full((28, 28), i * 30, np.uint8)).save(flat / f"{i}.png")
    return train_tiny(tmp_path / "run", dataset="folder", data_dir=str(flat), split="train",
                      **{"batch_size": 4, **overrides})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 4-step run shared by the tests that only read its outputs."""
    return train_tiny(tmp_path_factory.mktemp("run") / "run", max_steps=4)
