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

RESAMPLES = ("nearest", "lanczos")  # gan.pictures.RESAMPLE's filters (no PIL import here)


def message_options(max_bytes: int, max_receive_bytes: int | None = None) -> list[tuple[str, int]]:
    """gRPC channel/server options setting the message size limits (receive: `max_bytes` too
    unless given)."""
    return [("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_receive_bytes or max_bytes)]


def request_bytes(nz: int, max_images: int) -> int:
    """The receive limit of a server: twice the largest valid request (an explicit latent of
    max_images x nz float32, 4 bytes each, and one label per image, a varint of at most 10
    bytes) plus 64 KiB for the other fields and for other services' requests (275 KB for nz
    100 and 256 images)."""
    return 2 * max_images * (4 * nz + 10) + 64 * 1024


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
    """Largest num_images one Generate request may ask for (at most --max-queue-size); also the
    size of the parts a stream is made in."""
    max_images_per_stream: int = 100_000
    """Largest num_images one GenerateStream may ask for. A stream is made and sent in parts of
    --max-images-per-request images (each queued while the one before runs), so its memory does
    not grow with its size."""
    max_message_mb: int = 64
    """Largest gRPC message sent, in MiB (Generate responses over it are refused with a hint to
    use GenerateStream). Received messages are capped at twice what the largest valid request
    needs (about 275 KB for nz 100 and 256 images per request): larger ones get
    RESOURCE_EXHAUSTED before they are parsed."""
    inference_workers: int = 0
    """Inference worker threads, each running whole batches on the one shared session. 0: on
    the CPU provider one per usable core, each call single-threaded (on small generators that
    makes more images per second than one call on every core: docs/benchmarks.md); on a GPU, 1."""
    intra_op_threads: int = 0
    """CPU threads of each ONNX Runtime call; 0: the usable cores divided among the inference
    workers, so the cores are never oversubscribed."""
    encode_threads: int = 0
    """Threads encoding large PNG parts (over 64x64 pixels in all) off the event loop, never on
    the inference worker; raw formats and small PNGs are encoded on the loop. 0: one per usable
    core."""
    max_concurrent_rpcs: int = 256
    """Most RPCs handled at once (a queued request holds no thread, only its task); further ones
    get RESOURCE_EXHAUSTED from gRPC itself. Also --rpc-threads, its name before the asyncio
    server."""
    max_open_streams: int = 0
    """Most streaming calls (GenerateStream, health Watch) open at once; more get
    RESOURCE_EXHAUSTED at once. The rest of --max-concurrent-rpcs always stays free for unary
    calls (Generate, GetModelInfo, health Check). 0: half of --max-concurrent-rpcs."""
    stream_stall_s: float = 30.0
    """A stream whose client has not taken the next message for this many seconds is cut off
    (CANCELLED; checked every quarter of it), so clients that stop reading free their slot."""
    drain_s: float = 0.0
    """On SIGTERM/SIGINT: first answer health Check and Watch NOT_SERVING for this many seconds
    while still serving every request (load balancers move away; like Kubernetes' preStop),
    then refuse new connections and drain. A second signal ends this moment early."""
    grace_s: float = 30.0
    """After --drain-s: give in-flight and queued requests this many seconds to finish before
    they are cancelled."""
    metrics_port: int | None = None
    """Serve Prometheus metrics on http://METRICS_HOST:PORT/metrics (0 picks a free port);
    unset: off."""
    metrics_host: str = "127.0.0.1"
    """Address of the metrics endpoint (its own setting: exposing gRPC with --host does not
    expose metrics; 0.0.0.0 for a Prometheus on another machine)."""
    tls_cert: str | None = None
    """PEM certificate (chain) of the server: with --tls-key, the gRPC port speaks TLS only."""
    tls_key: str | None = None
    """PEM private key of --tls-cert."""
    tls_client_ca: str | None = None
    """PEM CA certificate(s): require mutual TLS, i.e. every client must present a
    certificate signed by one of them (needs --tls-cert and --tls-key)."""
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
                    "max_images_per_stream", "max_message_mb", "max_concurrent_rpcs")
        if self.stream_stall_s <= 0:
            raise ServeConfigError(f"stream_stall_s must be positive, got {self.stream_stall_s}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServeConfigError("give --tls-cert and --tls-key together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ServeConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
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
        if min(self.max_queue_delay_ms, self.grace_s, self.drain_s, self.intra_op_threads,
               self.inference_workers,
               self.encode_threads, self.max_open_streams) < 0:
            raise ServeConfigError("max_queue_delay_ms, grace_s, drain_s, max_open_streams and "
                                   "thread counts must not be negative")

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    @property
    def stream_slots(self) -> int:
        """max_open_streams, resolved (0: half of max_concurrent_rpcs, at least 1)."""
        return self.max_open_streams or max(1, self.max_concurrent_rpcs // 2)

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
    scale: int = 0
    """Upscale the --out grid, strip or GIF frames by this whole factor; 0: the smallest that
    makes them at least 512 px wide. --out-dir files keep the model's size."""
    resample: str = "nearest"
    """Upscaling filter: nearest (crisp pixel blocks, exact values) or lanczos (smooth)."""
    timeout_s: float = 60.0
    """Deadline of the server call, in seconds."""
    tls: bool = False
    """Connect to --server with TLS (implied by --tls-ca and --tls-cert); without --tls-ca the
    system's trusted roots verify the server."""
    tls_ca: str | None = None
    """PEM CA certificate(s) that verify the server's certificate."""
    tls_cert: str | None = None
    """PEM client certificate, for a server that requires mutual TLS (with --tls-key)."""
    tls_key: str | None = None
    """PEM private key of --tls-cert."""
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
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServeConfigError("give --tls-cert and --tls-key together")
        if (self.tls or self.tls_ca or self.tls_cert) and self.server is None:
            raise ServeConfigError("--tls, --tls-ca, --tls-cert and --tls-key go with --server")
        if self.nrow < 0 or self.timeout_s <= 0:
            raise ServeConfigError("nrow must not be negative and timeout_s must be positive")
        if self.scale < 0:
            raise ServeConfigError(f"--scale must not be negative (0: automatic), got "
                                   f"{self.scale}")
        check_choice("resample filter", self.resample, RESAMPLES, ServeConfigError)

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
