"""Shared by the serve and CLI tests: real exported generators and real servers on port 0."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from serve.config import ServeConfig
from serve.server import GeneratorServer

if TYPE_CHECKING:
    import torch

# torchvision's FashionMNIST.classes, in label order
FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")

# name -> (image_size, channels, ngf, output, class names); tiny widths keep export and inference
# quick. Class names make a conditional generator (a labels input, one class per image).
MODELS: dict[str, tuple[int, int, int, str, tuple[str, ...]]] = {
    "g32": (32, 1, 8, "float", ()),
    "g32_uint8": (32, 1, 8, "uint8", ()),  # the same weights as g32, pixels made in the graph
    "g64": (64, 3, 8, "float", ()),
    "g32_cond": (32, 1, 8, "float", FASHION_MNIST),  # init weights: fine for serving tests
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
    import torch

    import export.onnx as eo
    from train.model import Generator, init_weights

    size, channels, ngf, output, classes = MODELS[name]
    torch.manual_seed(size * 10 + channels)  # g32 and g32_uint8 share weights
    g = Generator(NZ, ngf, channels, size, num_classes=len(classes))
    g.apply(init_weights)
    if lively:
        _batchnorm_from_one_batch(g, len(classes))
    config = {"image_size": size, "channels": channels, "nz": NZ, "ngf": ngf,
              "dataset": "fashion-mnist"}
    meta = eo.metadata(config, output=output, precision="fp32", opset=eo.DEFAULT_OPSET, step=0,
                       checkpoint_sha256="0" * 64, class_names=list(classes))
    eo.save_atomic(eo.to_onnx(g, output=output, meta=meta), path)
    return path


def _batchnorm_from_one_batch(g: torch.nn.Module, classes: int) -> None:
    import torch

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
    from serve import latent

    return reference_latent(model, latent.from_seed(seed, n, NZ), labels)


def reference_latent(model: Path, z: np.ndarray, labels: list[int] | None = None) -> np.ndarray:
    """The model's raw output for latent z (n, nz) [and labels (n,)], batch 1, in this process."""
    from serve.model import ServedModel

    m = ServedModel(model, providers="cpu", max_batch=1)
    out = []
    for i in range(len(z)):
        label = None if labels is None else np.array([labels[i]], np.int64)
        out.append(m.run(z[i:i + 1], label))
    return np.concatenate(out)
