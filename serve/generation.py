"""`gan generate`'s work: images from a server or from a local ONNX file, written as PNGs.

Both paths use the same latent rule and the same pixel conversion, so a seed gives the same
images whether a server made them or this process did.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gan.atomic import atomic_write
from gan.errors import UserError
from serve import images, latent
from serve.config import GenerateConfig

log = logging.getLogger(__name__)


def from_server(target: str, num_images: int, seed: int, timeout_s: float) -> list[np.ndarray]:
    """(H, W, C) uint8 images from a running server (streamed, so any count fits)."""
    import grpc

    from serve.client import GeneratorClient

    out: list[np.ndarray] = []
    try:
        with GeneratorClient(target, timeout_s=timeout_s) as client:
            for part in client.generate_stream(num_images, seed=seed, format="raw_uint8"):
                out += part.images
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            raise UserError(f"cannot reach a server at {target} ({e.details()}): is `gan serve` "
                            "running there?") from None
        raise UserError(f"the server at {target} refused: {e.code().name}: {e.details()}") from None
    return out


def from_model(path: str, num_images: int, seed: int, providers: str,
               batch: int = 64) -> list[np.ndarray]:
    """(H, W, C) uint8 images from a local ONNX generator, in batches of `batch`."""
    from serve.model import ServedModel

    model = ServedModel(path, providers=providers, max_batch=batch)
    z = latent.from_seed(seed, num_images, model.info.nz)  # (n, nz)
    out: list[np.ndarray] = []
    for start in range(0, num_images, batch):
        out += list(images.convert(model.run(z[start:start + batch]), model.info.output,
                                   "raw_uint8"))
    return out


def write(pictures: list[np.ndarray], config: GenerateConfig) -> list[Path]:
    """Write the grid (--out) and/or one PNG per image (--out-dir); return the paths."""
    written = []
    if config.out:
        path = Path(config.out)
        data = images.png(images.grid(pictures, nrow=config.nrow))
        atomic_write(path, lambda f: f.write(data))
        written.append(path)
    if config.out_dir:
        folder = Path(config.out_dir)
        for i, picture in enumerate(pictures):
            data = images.png(picture)
            path = folder / f"{i:06d}.png"
            atomic_write(path, functools.partial(_write_bytes, data))
            written.append(path)
    return written


def run(config: GenerateConfig) -> tuple[int, list[Path]]:
    """Generate and write as `config` says; return (seed used, paths written)."""
    seed = latent.random_seed() if config.seed is None else config.seed
    if config.server:
        pictures = from_server(config.server, config.num_images, seed, config.timeout_s)
    else:
        assert config.model is not None  # GenerateConfig checks exactly one is set
        pictures = from_model(config.model, config.num_images, seed, config.providers)
    return seed, write(pictures, config)


def _write_bytes(data: bytes, f: BinaryIO) -> None:
    f.write(data)
