"""Shared by the serve and CLI tests: real exported generators and real servers on port 0."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from serve.config import ServeConfig
from serve.server import GeneratorServer

# name -> (image_size, channels, ngf, output); tiny widths keep export and inference quick.
MODELS = {
    "g32": (32, 1, 8, "float"),
    "g32_uint8": (32, 1, 8, "uint8"),  # the same weights as g32, pixels made in the graph
    "g64": (64, 3, 8, "float"),
}
NZ = 100


def export_generator(folder: Path, name: str) -> Path:
    """Export model `name` of MODELS into `folder` once (later calls reuse the file)."""
    path = folder / f"{name}.onnx"
    if path.exists():
        return path
    import torch

    import export.onnx as eo
    from train.model import Generator, init_weights

    size, channels, ngf, output = MODELS[name]
    torch.manual_seed(size * 10 + channels)  # g32 and g32_uint8 share weights
    g = Generator(NZ, ngf, channels, size)
    g.apply(init_weights)
    config = {"image_size": size, "channels": channels, "nz": NZ, "ngf": ngf,
              "dataset": "fashion-mnist"}
    meta = eo.metadata(config, output=output, precision="fp32", opset=eo.DEFAULT_OPSET, step=0,
                       checkpoint_sha256="0" * 64)
    eo.save_atomic(eo.to_onnx(g, output=output, meta=meta), path)
    return path


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


def reference(model: Path, seed: int, n: int) -> np.ndarray:
    """The model's raw output for the seed's latent, one image per inference call (batch 1)."""
    from serve import latent
    from serve.model import ServedModel

    m = ServedModel(model, providers="cpu", max_batch=1)
    z = latent.from_seed(seed, n, m.info.nz)
    return np.concatenate([m.run(z[i:i + 1]) for i in range(n)])
