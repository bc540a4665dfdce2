"""A small synchronous Python client for `gan serve`.

    with GeneratorClient("127.0.0.1:50051") as client:
        result = client.generate(16, seed=1)          # result.images: 16 (H, W, C) uint8 arrays
        info = client.model_info()                    # info.class_names: [] if unconditional
        shoes = client.generate(4, seed=1, labels=7)  # conditional: class 7 for every image

Errors are grpc.RpcError with the server's status code and message (INVALID_ARGUMENT for bad
input, RESOURCE_EXHAUSTED when the server's queue is full, UNAVAILABLE when it is unreachable).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from serve import images
from serve._proto.gan.v1 import generator_pb2 as pb
from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc
from serve.config import message_options
from serve.images import FROM_PB, TO_PB


@dataclass
class Generated:
    """Images from one response (or one streamed part), decoded."""

    images: list[np.ndarray]  # (H, W, C): uint8 for png and raw_uint8, float32 for raw_float32
    data: list[bytes]  # the encoded bytes as received (PNG files or raw pixels)
    seed: int | None  # the seed used; None when the request gave an explicit latent
    model_id: str
    first_index: int = 0


Labels = int | Sequence[int] | np.ndarray  # one class for all images, or one per image


def request(num_images: int, *, seed: int | None = None,
            latent: np.ndarray | Sequence[float] | None = None, format: str = "png",
            labels: Labels = ()) -> pb.GenerateRequest:
    """A GenerateRequest; `latent` is (num_images, nz) or flat row-major; `labels` (conditional
    models) one class index for all images or one per image, () for the server's default (the
    classes in turn)."""
    if format not in TO_PB:
        raise ValueError(f"unknown format {format!r}: use one of {', '.join(TO_PB)}")
    classes = np.asarray(labels).ravel()
    if classes.size and classes.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer class indices, got {classes.dtype} values")
    req = pb.GenerateRequest(num_images=num_images, format=TO_PB[format],
                             labels=classes.astype(np.int64).tolist())
    if seed is not None:
        req.seed = seed
    if latent is not None:
        req.latent.extend(np.asarray(latent, dtype=np.float32).ravel().tolist())
    return req


def decode(response: pb.GenerateResponse) -> Generated:
    arrays, data = [], []
    for im in response.images:
        arrays.append(images.decode(im.data, FROM_PB[im.format], im.height, im.width,
                                    im.channels))
        data.append(im.data)
    return Generated(images=arrays, data=data,
                     seed=response.seed if response.HasField("seed") else None,
                     model_id=response.model_id, first_index=response.first_index)


class GeneratorClient:
    """A channel to one server; thread-safe (gRPC channels are), so threads may share one."""

    def __init__(self, target: str, *, timeout_s: float | None = 60.0,
                 max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(target, options=message_options(max_message_bytes))
        self.stub = pb_grpc.GeneratorStub(self.channel)

    def generate(self, num_images: int, *, seed: int | None = None,
                 latent: np.ndarray | Sequence[float] | None = None, format: str = "png",
                 labels: Labels = (), timeout_s: float | None = None) -> Generated:
        """One Generate call: all images in one response. `labels`: see `request`."""
        req = request(num_images, seed=seed, latent=latent, format=format, labels=labels)
        return decode(self.stub.Generate(req, timeout=self._timeout(timeout_s)))

    def generate_stream(self, num_images: int, *, seed: int | None = None,
                        latent: np.ndarray | Sequence[float] | None = None,
                        format: str = "png", labels: Labels = (),
                        timeout_s: float | None = None) -> Iterator[Generated]:
        """GenerateStream: the images in order, in parts, as the server makes them."""
        req = request(num_images, seed=seed, latent=latent, format=format, labels=labels)
        for response in self.stub.GenerateStream(req, timeout=self._timeout(timeout_s)):
            yield decode(response)

    def model_info(self, timeout_s: float | None = None) -> pb.ModelInfo:
        return self.stub.GetModelInfo(pb.GetModelInfoRequest(),
                                      timeout=self._timeout(timeout_s))

    def _timeout(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s  # 0 means 0, not "unset"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the channel connects (grpc.FutureTimeoutError after timeout_s)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GeneratorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
