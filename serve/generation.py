"""`gan generate`'s work: images from a server or from a local ONNX file, written as PNG or GIF.

Both paths use the same latent rule, the same label rule and the same pixel conversion, so a
request gives the same images whether a server made them or this process did. A batch comes from
a seed; an interpolation's frames (serve.latent.interpolation) are computed here and go to a
server as an explicit latent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from gan.atomic import atomic_write
from gan.errors import UserError
from serve import images, labels, latent
from serve.config import GenerateConfig

if TYPE_CHECKING:
    from serve.client import GeneratorClient
    from serve.model import ServedModel

log = logging.getLogger(__name__)


class Remote:
    """A running `gan serve`, asked for (H, W, C) uint8 images (streamed, so any count fits)."""

    def __init__(self, target: str, timeout_s: float) -> None:
        from serve.client import GeneratorClient

        self.target = target
        self.client: GeneratorClient = GeneratorClient(target, timeout_s=timeout_s)
        try:
            with self._errors():
                info = self.client.model_info()
        except UserError:
            self.client.close()
            raise
        self.nz, self.class_names = info.nz, list(info.class_names)

    def images(self, n: int, *, seed: int | None = None, z: np.ndarray | None = None,
               label: Sequence[int] = ()) -> list[np.ndarray]:
        """n images of the seed's latent or of z (n, nz); `label`: () or one for all."""
        out: list[np.ndarray] = []
        with self._errors():
            for part in self.client.generate_stream(n, seed=seed, latent=z, labels=label,
                                                    format="raw_uint8"):
                out += part.images
        return out

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """grpc.RpcError -> one-line UserError."""
        import grpc

        try:
            yield
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise UserError(f"cannot reach a server at {self.target} ({e.details()}): is "
                                "`gan serve` running there?") from None
            raise UserError(f"the server at {self.target} refused: {e.code().name}: "
                            f"{e.details()}") from None

    def close(self) -> None:
        self.client.close()


class Local:
    """A local ONNX generator, run in batches of `batch` with the server's rules. Its metadata is
    read at once (cheap: flags like --label are checked against it); the session is built on
    the first call."""

    def __init__(self, path: str, providers: str, batch: int = 64) -> None:
        from gan.model import read_info

        self.path, self.providers, self.batch = path, providers, batch
        self.info = read_info(path)
        self.nz, self.class_names = self.info.nz, self.info.class_names

    @functools.cached_property
    def model(self) -> ServedModel:
        from serve.model import ServedModel

        return ServedModel(self.path, providers=self.providers, max_batch=self.batch)

    def images(self, n: int, *, seed: int | None = None, z: np.ndarray | None = None,
               label: Sequence[int] = ()) -> list[np.ndarray]:
        """n images of the seed's latent or of z (n, nz); `label`: () or one for all."""
        if z is None:
            assert seed is not None
            z = latent.from_seed(seed, n, self.nz)  # (n, nz)
        classes = labels.for_request(label, n, self.class_names)  # (n,) or None
        out: list[np.ndarray] = []
        for start in range(0, n, self.batch):
            part = None if classes is None else classes[start:start + self.batch]
            raw = self.model.run(z[start:start + self.batch], part)
            out += list(images.convert(raw, self.info.output, "raw_uint8"))
        return out

    def close(self) -> None:
        pass


def write(pictures: list[np.ndarray], config: GenerateConfig) -> list[Path]:
    """Write the grid or GIF (--out) and/or one PNG per image (--out-dir); return the paths."""
    written = []
    if config.out:
        path = Path(config.out)
        if path.suffix.lower() == ".gif":
            data = images.gif(pictures)
        else:  # an interpolation reads left to right: one row unless --nrow says otherwise
            nrow = config.nrow or (len(pictures) if config.interpolate else 0)
            data = images.png(images.grid(pictures, nrow=nrow))
        atomic_write(path, functools.partial(_write_bytes, data))
        written.append(path)
    if config.out_dir:
        folder = Path(config.out_dir)
        for i, picture in enumerate(pictures):
            path = folder / f"{i:06d}.png"
            atomic_write(path, functools.partial(_write_bytes, images.png(picture)))
            written.append(path)
    return written


def run(config: GenerateConfig) -> tuple[str, list[Path]]:
    """Generate and write as `config` says; return (what was made, in words; paths written)."""
    source = Remote(config.server, config.timeout_s) if config.server else Local(
        str(config.model), config.providers)  # GenerateConfig checks exactly one is set
    try:
        label, named = _label(config, source.class_names)
        if config.interpolate:
            a, b = config.interpolate
            z = latent.interpolation(a, b, config.count, source.nz)  # (steps, nz)
            pictures = source.images(config.count, z=z, label=label)
            made = f"seeds {a} -> {b}, {config.count} frames"
        else:
            seed = latent.random_seed() if config.seed is None else config.seed
            pictures = source.images(config.count, seed=seed, label=label)
            made = f"seed {seed}"
    finally:
        source.close()
    return made + named, write(pictures, config)


def _label(config: GenerateConfig, class_names: list[str]) -> tuple[list[int], str]:
    """--label as the request's labels ([] or [index]) and words for the summary line."""
    if config.label is None:
        if config.interpolate and class_names:  # frames of cycling classes would be noise
            raise UserError("this model is conditional: pick the class of the interpolation "
                            f"with --label (one of: {', '.join(class_names)})")
        return [], ""
    try:
        index = labels.parse(config.label, class_names)
    except labels.LabelError as e:
        raise UserError(str(e)) from None
    return [index], f", class {class_names[index]} ({index})"


def _write_bytes(data: bytes, f: BinaryIO) -> None:
    f.write(data)
