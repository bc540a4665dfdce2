"""The serving and generation configurations: typed dataclasses, documented field by field.

`gan serve` and `gan generate` only override these defaults. No heavy import here (no
onnxruntime, no grpc): `gan --help` stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from gan.choices import PROVIDERS, check_choice
from gan.errors import UserError


def message_options(max_bytes: int) -> list[tuple[str, int]]:
    """gRPC channel/server options setting both message size limits (server and client)."""
    return [("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_bytes)]


class ServeConfigError(UserError):
    """A serving setting that cannot work."""


@dataclass(kw_only=True)
class ServeConfig:
    """Everything that defines a running `gan serve`."""

    model: str = ""
    """The generator to serve: an ONNX file written by `gan export`."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 or [::] to accept connections from other machines)."""
    port: int = 50051
    """gRPC port; 0 picks a free one (the bound address is printed on start-up)."""
    providers: str = "auto"
    """ONNX Runtime execution provider: auto (TensorRT, then CUDA, then CPU: the first that
    really loads), tensorrt, cuda or cpu. The chosen one is logged and reported by
    GetModelInfo."""
    fp16: bool = False
    """TensorRT only: let TensorRT build fp16 kernels (faster; images differ slightly)."""
    trt_cache_dir: str | None = None
    """TensorRT engine and timing cache folder (default: <model>.trt-cache/ beside the model)."""
    max_batch_size: int = 64
    """Largest inference batch, in images (not requests): queued requests are merged up to this
    many images, and larger requests are split across batches."""
    max_queue_delay_ms: float = 0.0
    """How long the oldest queued request may wait for a batch to fill before it runs anyway, in
    ms. 0 (like Triton's default): run at once with whatever is queued; under load requests still
    pile up while the previous batch runs, so batches form by themselves."""
    max_queue_size: int = 1024
    """Most images waiting in the queue; a request that does not fit fails at once with
    RESOURCE_EXHAUSTED, so the server never grows without bound."""
    max_images_per_request: int = 256
    """Largest num_images one request may ask for (at most --max-queue-size)."""
    max_message_mb: int = 64
    """Largest gRPC message sent or received, in MiB (Generate responses over it are refused
    with a hint to use GenerateStream)."""
    intra_op_threads: int = 0
    """CPU threads of the one inference worker's ONNX Runtime calls; 0: one per usable core.
    Only one inference runs at a time, so this never oversubscribes the cores."""
    encode_threads: int = 0
    """Most requests converting and encoding images (PNG, raw bytes) at once, each on its own
    RPC thread, never on the inference worker; 0: one per usable core."""
    rpc_threads: int = 256
    """Most RPCs handled at once (each waiting request holds a thread while it is queued);
    further ones get RESOURCE_EXHAUSTED from gRPC itself."""
    grace_s: float = 30.0
    """On SIGTERM/SIGINT: stop accepting, then give in-flight and queued requests this many
    seconds to finish before they are cancelled."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on http://HOST:PORT/metrics (0 picks a free port); unset: off."""
    http_port: int | None = None
    """Also serve the Open Inference Protocol (v2) REST API and the model's page on
    http://HOST:PORT/ (0 picks a free port, printed on start-up); unset: no HTTP."""
    model_name: str = ""
    """The model's name in the Open Inference Protocol (v2) APIs (default: the model file's
    stem, e.g. g for g.onnx)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ServeConfigError with one clear line for the first value that cannot work."""
        check_choice("provider", self.providers, PROVIDERS, ServeConfigError)
        positive = ("max_batch_size", "max_queue_size", "max_images_per_request",
                    "max_message_mb", "rpc_threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise ServeConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_images_per_request > self.max_queue_size:
            raise ServeConfigError(
                f"max_images_per_request ({self.max_images_per_request}) cannot exceed "
                f"max_queue_size ({self.max_queue_size}): such a request could never be queued")
        if not all(p is None or 0 <= p <= 65535
                   for p in (self.port, self.metrics_port, self.http_port)):
            raise ServeConfigError("ports must be between 0 and 65535")
        if self.model_name and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.model_name):
            raise ServeConfigError(f"model_name {self.model_name!r}: use letters, digits, "
                                   "'_', '.' and '-' (it is part of URLs)")
        if min(self.max_queue_delay_ms, self.grace_s, self.intra_op_threads,
               self.encode_threads) < 0:
            raise ServeConfigError("max_queue_delay_ms, grace_s and thread counts must not be "
                                   "negative")

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    @property
    def v2_name(self) -> str:
        """The v2 model name: model_name, or the model file's stem."""
        return self.model_name or PurePath(self.model).stem


@dataclass(kw_only=True)
class GenerateConfig:
    """What `gan generate` makes, and where from."""

    num_images: int | None = None
    """How many images to generate (default 16); with --interpolate, --steps sets the count."""
    seed: int | None = None
    """Latent seed (see the determinism rule); unset: a random one, printed so the images can be
    made again."""
    label: str | None = None
    """Conditional models: the class of every image, by name (case-insensitive) or index; unset:
    the classes in turn (image i gets class i % classes)."""
    interpolate: tuple[int, int] | None = None
    """Two seeds A and B: instead of a batch, --steps frames along the slerp from seed A's latent
    to seed B's (first frame = seed A's image, last = seed B's)."""
    steps: int = 10
    """With --interpolate: number of frames, at least 2."""
    server: str | None = None
    """A running `gan serve` to ask, as HOST:PORT."""
    model: str | None = None
    """An ONNX generator to run locally instead of asking a server (same latents, same images)."""
    out: str | None = None
    """Write all images to this file: .png is one grid (with --interpolate, one row: a strip),
    .gif an animation with one frame per image."""
    out_dir: str | None = None
    """Write one PNG per image (000000.png, 000001.png, ...) into this folder."""
    nrow: int = 0
    """Images per grid row; 0: a square-ish grid (ceil(sqrt(n)) per row), or one row with
    --interpolate."""
    timeout_s: float = 60.0
    """Deadline of the server call, in seconds."""
    providers: str = "cpu"
    """With --model: ONNX Runtime provider (auto, tensorrt, cuda, cpu)."""

    def __post_init__(self) -> None:
        if (self.server is None) == (self.model is None):
            raise ServeConfigError("give exactly one of --server HOST:PORT or --model FILE.onnx")
        if not self.out and not self.out_dir:
            raise ServeConfigError("give --out GRID.png and/or --out-dir DIR for the images")
        if self.out and not self.out.lower().endswith((".png", ".gif")):
            raise ServeConfigError(f"--out {self.out!r}: write a .png (a grid or strip) or a "
                                   ".gif (an animation)")
        self._check_interpolation()
        if self.num_images is None:
            self.num_images = self.steps if self.interpolate else 16
        if self.num_images < 1:
            raise ServeConfigError(f"num_images must be at least 1, got {self.num_images}")
        seeds = [self.seed] + list(self.interpolate or ())
        if any(s is not None and not 0 <= s < 2**64 for s in seeds):
            raise ServeConfigError("seeds must be between 0 and 2^64 - 1")
        check_choice("provider", self.providers, PROVIDERS, ServeConfigError)
        if self.nrow < 0 or self.timeout_s <= 0:
            raise ServeConfigError("nrow must not be negative and timeout_s must be positive")

    def _check_interpolation(self) -> None:
        if self.steps < 2:
            raise ServeConfigError(f"--steps must be at least 2 (the two ends), got {self.steps}")
        if not self.interpolate:
            return
        if self.seed is not None:
            raise ServeConfigError("--seed does not go with --interpolate SEED_A SEED_B: the "
                                   "frames' latents come from those two seeds")
        if self.num_images is not None:
            raise ServeConfigError("-n does not go with --interpolate: --steps sets the number "
                                   "of frames")

    @property
    def count(self) -> int:
        """The number of images (num_images, resolved)."""
        assert self.num_images is not None  # __post_init__ resolves it
        return self.num_images
