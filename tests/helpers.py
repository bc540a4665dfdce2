"""Helpers shared by the test packages (test modules never import each other): the CLI runner,
tiny real training runs, exported generators and real servers on port 0, and samplers of known
quality."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner, Result

import export.onnx as eo
from gan import contract
from gan.cli import app
from gan.errors import UserError
from quality.sources import Sampler
from serve import latent
from serve.config import ServeConfig
from serve.model import ServedModel
from serve.server import GeneratorServer
from train import data
from train.model import Generator, init_weights
from train.run import run

# --- the CLI ------------------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    """`gan ARGS...` through the real typer app, in this process."""
    return CliRunner().invoke(app, list(args))


def one_line_user_error(result: Result) -> str:
    """The message of a command that failed with a one-line UserError."""
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


# --- tiny real training runs ---------------------------------------------------------------------

# The tiny runs' precision: fp32 unless GAN_TEST_PRECISION says otherwise (see tests/conftest.py);
# a test whose expectations need fp32 pins it itself.
TEST_PRECISION = os.environ.get("GAN_TEST_PRECISION", "fp32")

# A tiny real run: the real Fashion-MNIST test split, 8-channel models, 32 px.
TINY: dict[str, Any] = {"split": "test", "ngf": 8, "ndf": 8, "batch_size": 16, "image_size": 32,
                        "log_every": 2, "checkpoint_every": 2, "keep_checkpoints": 2,
                        "num_samples": 16, "device": "cpu", "precision": TEST_PRECISION,
                        "compile": False}


def train_tiny(out: Path, resume: bool = False, report: Any = None, **overrides: Any) -> Path:
    """TINY with `overrides`; `report` gets the closing summary (train.summary)."""
    return run({**TINY, **overrides}, out=str(out), resume=resume, report=report)


def train_on_flat_folder(tmp_path: Path, **overrides: Any) -> Path:
    """A tiny run on a folder of 8 grey 28x28 images without class sub-folders (no labels)."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(8):
        Image.fromarray(np.full((28, 28), i * 30, np.uint8)).save(flat / f"{i}.png")
    return train_tiny(tmp_path / "run", dataset="folder", data_dir=str(flat), split="train",
                      **{"batch_size": 4, **overrides})


# The runs that export and quality tests read: enough steps for BatchNorm statistics and weights
# to move away from their init.
EXPORT_RUN: dict[str, Any] = {"split": "test", "ngf": 8, "ndf": 8, "batch_size": 8,
                              "max_steps": 4, "log_every": 2, "num_samples": 4, "device": "cpu",
                              "precision": TEST_PRECISION, "compile": False}
SIZES = (32, 64, 128)
FASHION_MNIST_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


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


# --- exported generators and real servers --------------------------------------------------------

# torchvision's FashionMNIST.classes, in label order
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

# name -> (image_size, channels, ngf, output, class names); tiny widths keep export and inference
# quick. Class names make a conditional generator (a labels input, one class per image).
MODELS: dict[str, tuple[int, int, int, str, tuple[str, ...]]] = {
    "g32": (32, 1, 8, "float", ()),
    "g32_uint8": (32, 1, 8, "uint8", ()),  # the same weights as g32, pixels made in the graph
    "g64": (64, 3, 8, "float", ()),
    "g32_cond": (32, 1, 8, "float", FASHION_MNIST_CLASSES),  # init weights: fine for serving
}
NZ = 100


def export_generator(folder: Path, name: str, lively: bool = False) -> Path:
    """Export model `name` of MODELS into `folder` once (later calls reuse the file).

    lively: BatchNorm statistics from one training-mode batch instead of the init's (mean 0,
    variance 1), so that images differ visibly between seeds and classes (at init the output is
    within 1e-3 of 0: the same flat grey for every seed once quantised to pixels)."""
    path = folder / f"{name}{'_lively' if lively else ''}.onnx"
    if path.exists():
        return path
    size, channels, ngf, output, classes = MODELS[name]
    torch.manual_seed(size * 10 + channels)  # g32 and g32_uint8 share weights
    g = Generator(NZ, ngf, channels, size, num_classes=len(classes))
    g.apply(init_weights)
    if lively:
        _batchnorm_from_one_batch(g, len(classes))
    config = {"image_size": size, "channels": channels, "nz": NZ, "ngf": ngf,
              "dataset": "fashion-mnist"}
    meta = contract.metadata(config, output=output, precision="fp32", opset=eo.DEFAULT_OPSET,
                             step=0, checkpoint_sha256="0" * 64, class_names=list(classes))
    eo.save_atomic(eo.to_onnx(g, output=output, meta=meta), path)
    return path


def _batchnorm_from_one_batch(g: Generator, classes: int) -> None:
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0  # running statistics := this batch's
    g.train()
    with torch.no_grad():
        g(torch.randn(256, NZ), torch.arange(256) % classes if classes else None)
    g.eval()


@contextlib.contextmanager
def running(model: Path, **overrides: object) -> Iterator[GeneratorServer]:
    """A real server on 127.0.0.1, a free port, CPU, stopped (briefly) on exit."""
    settings: dict[str, object] = {"model": str(model), "port": 0, "providers": "cpu",
                                   "grace_s": 5.0}
    settings.update(overrides)
    server = GeneratorServer(ServeConfig(**settings))  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop(grace_s=1.0)


def reference(model: Path, seed: int, n: int, labels: list[int] | None = None) -> np.ndarray:
    """The model's raw output for the seed's latent, one image per inference call (batch 1);
    `labels` (one per image) for a conditional model."""
    return reference_latent(model, latent.from_seed(seed, n, NZ), labels)


def reference_latent(model: Path, z: np.ndarray, labels: list[int] | None = None) -> np.ndarray:
    """The model's raw output for latent z (n, nz) [and labels (n,)], batch 1, in this process."""
    m = ServedModel(model, providers="cpu", max_batch=1)
    out = []
    for i in range(len(z)):
        label = None if labels is None else np.array([labels[i]], np.int64)
        out.append(m.run(z[i:i + 1], label))
    return np.concatenate(out)


# --- samplers of known quality ------------------------------------------------------------------

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


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout` s (an upper bound for a
    loaded machine, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
