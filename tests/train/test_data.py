from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train import data
from train.config import TrainConfig
from train.data import DataError


@pytest.mark.fashion_mnist
def test_debian_fashion_mnist_through_torchvision() -> None:
    images = data.load(TrainConfig(split="test"))
    assert images.images.shape == (10000, 1, 28, 28) and images.images.dtype == torch.uint8
    assert images.labels is not None and images.labels.shape == (10000,)
    assert images.class_names[7] == "Sneaker"
    raw = data.cache_dir() / "FashionMNIST" / "raw"
    assert (raw / "t10k-images-idx3-ubyte").is_file()  # torchvision's layout, prepared once


def test_batch_transform_pads_and_resizes() -> None:
    batch = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    batch[0, 0, 0, 0], batch[0, 0, 0, 1] = 0, 255
    x32 = data.to_model_input(batch, 32)
    assert x32.shape == (2, 1, 32, 32) and x32.min() == -1 and x32.max() == 1
    assert torch.equal(x32[:, :, 2:30, 2:30], batch.float() / 127.5 - 1)  # exact pixels inside
    assert (x32[:, :, :2] == -1).all()  # the pad is background
    x64 = data.to_model_input(batch, 64)
    assert x64.shape == (2, 1, 64, 64) and x64.min() >= -1 and x64.max() <= 1


def _png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_folder_with_classes(tmp_path: Path) -> None:
    _png(tmp_path / "cats" / "a.png", (255, 0, 0))
    _png(tmp_path / "dogs" / "b.jpg", (0, 0, 255), (20, 50))
    _png(tmp_path / "dogs" / "sub" / "c.png", (0, 255, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    d = data.load(TrainConfig(dataset="folder", data_dir=str(tmp_path), image_size=32))
    assert d.images.shape == (3, 3, 32, 32) and d.class_names == ["cats", "dogs"]
    assert d.labels is not None and d.labels.tolist() == [0, 1, 1]
    assert d.images[0, 0].float().mean() == pytest.approx(255, abs=1)  # red stays red


def test_flat_folder_grayscale(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / f"{i}.png", (i * 100,) * 3)
    d = data.load(TrainConfig(dataset="folder", data_dir=str(tmp_path), channels=1))
    assert d.images.shape == (3, 1, 32, 32) and d.labels is None and d.class_names == []
    assert np.allclose(d.images[:, 0, 5, 5].numpy(), [0, 100, 200], atol=1)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        data.load(TrainConfig(dataset="folder", data_dir=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="no images"):
        data.load(TrainConfig(dataset="folder", data_dir=str(tmp_path)))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        data.load(TrainConfig(dataset="folder", data_dir=str(tmp_path)))


def test_missing_builtin_dataset_says_what_to_do(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset="fashion-mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load(cfg, download=False)
