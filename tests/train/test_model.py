from __future__ import annotations

import pytest
import torch
from torch import nn

from train.model import Discriminator, Generator, init_weights, num_layers


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_every_size(size: int, channels: int) -> None:
    g, d = Generator(16, 8, channels, size), Discriminator(8, channels, size)
    z = torch.randn(3, 16)
    x = g(z)
    assert x.shape == (3, channels, size, size)
    assert g(z[:, :, None, None]).shape == x.shape  # (B, nz, 1, 1) works too
    assert x.min() >= -1 and x.max() <= 1  # tanh
    assert d(x).shape == (3,)  # one logit per image


def _convs(m: nn.Module) -> list[tuple[int, int]]:
    return [(c.in_channels, c.out_channels) for c in m.modules()
            if isinstance(c, (nn.Conv2d, nn.ConvTranspose2d))]


def test_channel_progressions() -> None:
    # 32 px: nz -> d -> d/2 -> d/4 -> C in G (d = 4 ngf), C -> d -> 2d -> 4d -> 1 in D.
    assert _convs(Generator(100, 64, 1, 32)) == [(100, 256), (256, 128), (128, 64), (64, 1)]
    assert _convs(Discriminator(64, 1, 32)) == [(1, 64), (64, 128), (128, 256), (256, 1)]
    # 64 px with ngf = ndf = 64: exactly the PyTorch DCGAN tutorial.
    assert _convs(Generator(100, 64, 3, 64)) == [
        (100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    assert _convs(Discriminator(64, 3, 64)) == [
        (3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    # 128 px: one more block on each side.
    assert len(_convs(Generator(100, 64, 3, 128))) == 6
    assert len(_convs(Discriminator(64, 3, 128))) == 6


def _kind(m: nn.Module) -> str:
    """The torch.nn class a layer is (GemmConv2d is an nn.Conv2d with a faster bf16 backward)."""
    return next(c.__name__ for c in type(m).__mro__ if c.__module__.startswith("torch.nn"))


def test_tutorial_layers_at_64() -> None:
    g = Generator(100, 64, 3, 64)
    kinds = [_kind(m) for m in g.main]
    assert kinds == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 4 + ["ConvTranspose2d", "Tanh"]
    d = Discriminator(64, 3, 64)
    assert [_kind(m) for m in d.main][:2] == ["Conv2d", "LeakyReLU"]  # no norm first
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    assert all(c.bias is None for c in g.modules() if isinstance(c, nn.ConvTranspose2d))


def test_init_statistics() -> None:
    torch.manual_seed(0)
    g = Generator(100, 64, 1, 64)
    g.apply(init_weights)
    conv = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    bn = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_w = torch.cat([m.weight.flatten() for m in bn])
    assert abs(conv.mean().item()) < 1e-3 and conv.std().item() == pytest.approx(0.02, rel=0.02)
    assert bn_w.mean().item() == pytest.approx(1.0, abs=5e-3)
    assert bn_w.std().item() == pytest.approx(0.02, rel=0.15)
    assert all(torch.count_nonzero(m.bias) == 0 for m in bn)


@pytest.mark.parametrize("size", [16, 48, 256, 0])
def test_unsupported_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="not supported"):
        num_layers(size)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_discriminator_norms(norm: str) -> None:
    assert Discriminator(8, 1, 32, norm=norm)(torch.randn(2, 1, 32, 32)).shape == (2,)
