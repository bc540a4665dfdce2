"""Class-conditional DCGAN: G's label embedding, the projection discriminator, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import train_on_flat_folder, train_tiny
from train import checkpoint
from train.config import ConfigError
from train.model import Discriminator, Generator, init_weights


def test_generator_output_depends_on_the_label() -> None:
    torch.manual_seed(0)
    g = Generator(16, 8, 1, 32, num_classes=10, label_dim=4).eval()
    g.apply(init_weights)
    z = torch.randn(1, 16).expand(10, 16)  # one latent, every class
    with torch.no_grad():
        out = g(z, torch.arange(10))
    assert out.shape == (10, 1, 32, 32)
    assert all(not torch.equal(out[0], out[i]) for i in range(1, 10))
    assert g.main[0].in_channels == 16 + 4  # z joined with the embedding
    with pytest.raises(ValueError, match="pass labels"):
        g(z)


def test_projection_discriminator_adds_the_label_term_to_the_unconditional_logit() -> None:
    torch.manual_seed(0)
    d = Discriminator(8, 1, 32, num_classes=10).eval()
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([0, 4, 9])
    with torch.no_grad():
        phi = d.main[:-1](x)  # (3, 32, 4, 4)
        want = d.main[-1](phi).flatten() + (d.embed(y) * phi.sum((2, 3))).sum(1)
        torch.testing.assert_close(d(x, y), want)
        assert not torch.equal(d(x, y), d(x, torch.tensor([1, 1, 1])))
    unconditional = Discriminator(8, 1, 32)
    assert sum(p.numel() for p in d.parameters()) == (
        sum(p.numel() for p in unconditional.parameters()) + 10 * 32)


@pytest.mark.fashion_mnist
@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])  # wgan-gp: the penalty sees labels too
def test_conditional_training_on_fashion_mnist(tmp_path: Path, loss: str) -> None:
    out = train_tiny(tmp_path / loss, max_steps=3, conditional=True, loss=loss)
    ckpt = checkpoint.load(out)
    assert ckpt["config"]["conditional"] and len(ckpt["class_names"]) == 10
    assert ckpt["class_names"][7] == "Sneaker"
    g = checkpoint.build_generator(ckpt)
    assert g.num_classes == 10
    with torch.no_grad():
        assert g(torch.randn(2, 100), torch.tensor([7, 7])).shape == (2, 1, 32, 32)
    # the sample grid has one column per class: 10 x (32 + 2 px padding) + 2
    grid = Image.open(out / "samples" / "step-3.png")
    assert grid.width == 10 * 34 + 2 and grid.height == 2 * 34 + 2  # 16 samples -> 2 rows of 10


def test_conditional_needs_labelled_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--conditional needs labelled data"):
        train_on_flat_folder(tmp_path, max_steps=1, conditional=True)


def test_conditional_training_on_class_folders(tmp_path: Path) -> None:
    """A user's own labelled images: one sub-folder per class (ImageFolder layout)."""
    rng = np.random.default_rng(0)
    for name in ("circles", "squares"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.jpg")
    out = train_tiny(tmp_path / "run", dataset="folder", data_dir=str(tmp_path / "data"),
                     split="train", channels=3, batch_size=4, max_steps=2, conditional=True)
    ckpt = checkpoint.load(out)
    assert ckpt["class_names"] == ["circles", "squares"]
    g = checkpoint.build_generator(ckpt)
    with torch.no_grad():
        assert g(torch.randn(2, 100), torch.tensor([0, 1])).shape == (2, 3, 32, 32)
