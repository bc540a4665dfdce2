"""Samplers with known quality for the evaluation tests: real images (the best a generator can
do), uniform noise, mixtures of the two, and an untrained DCGAN generator."""

from __future__ import annotations

import torch

from train import data
from train.evaluation import Sampler
from train.model import Generator, init_weights


class RealImages:
    """Returns real images in place of samples: random ones for unconditional calls, images of
    class (label + label_shift) % classes for conditional ones (shift 0: a perfect conditional
    generator; shift 1: one that always draws the next class)."""

    def __init__(self, images: data.ImageData, image_size: int, label_shift: int = 0,
                 seed: int = 1) -> None:
        self.images, self.image_size, self.shift = images, image_size, label_shift
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        n = self.images.images.shape[0]
        idx = torch.randint(0, n, (z.shape[0],), generator=self.gen)
        if labels is not None:
            assert self.images.labels is not None
            wanted = (labels + self.shift) % len(self.images.class_names)
            idx = torch.stack([self._of_class(int(c)) for c in wanted])
        return data.to_model_input(self.images.images[idx], self.image_size)  # (B, C, S, S)

    def _of_class(self, c: int) -> torch.Tensor:
        assert self.images.labels is not None
        members = (self.images.labels == c).nonzero()[:, 0]
        return members[torch.randint(0, len(members), (), generator=self.gen)]


class Noise:
    """Uniform noise images in [-1, 1]."""

    def __init__(self, channels: int, image_size: int, seed: int = 2) -> None:
        self.shape = (channels, image_size, image_size)
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return torch.rand(z.shape[0], *self.shape, generator=self.gen) * 2 - 1


def mixture(good: Sampler, bad: Sampler, bad_fraction: float) -> Sampler:
    """The first bad_fraction of every batch from `bad`, the rest from `good`."""
    def sample(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        images = good(z, labels)
        k = round(bad_fraction * z.shape[0])
        images[:k] = bad(z[:k], None if labels is None else labels[:k])
        return images

    return sample


def untrained_generator(nz: int, channels: int, image_size: int) -> Sampler:
    """A DCGAN generator with its initial weights (eval mode), as the ONNX export would run it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = Generator(nz, 16, channels, image_size)
        g.apply(init_weights)
    g.eval()

    def sample(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode():
            return g(z)

    return sample
