"""The gan.v1.Generator service: validates requests, queues them on the batcher, answers.

Its methods are coroutines: `gan serve` runs them on grpc.aio's event loop, each Ray Serve replica
on its own. A handler validates (bad input ends in INVALID_ARGUMENT before anything is queued, so
it never touches other requests), queues its job (a full queue is RESOURCE_EXHAUSTED, shutting
down UNAVAILABLE), awaits the worker's output without holding a thread, and converts and encodes
it: raw formats and small PNG parts inline on the loop (microseconds; a thread hop would cost
more), larger PNG parts on a small pool (Pillow's encoder releases the GIL). An RPC that ends
while queued (cancelled, deadline) drops its queued images. Each RPC is counted by method and
status code, and timed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from gan.contract import GeneratorInfo
from gan.session import wanted
from serve import admission, images, labels, latent
from serve._proto.gan.v1 import generator_pb2 as pb
from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc
from serve.admission import Abort as _Abort
from serve.batcher import Batcher, Job
from serve.config import ServeConfig
from serve.images import FROM_PB, TO_PB
from serve.metrics import Metrics
from serve.model import ServedModel, default_threads

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Generator"].full_name  # "gan.v1.Generator"

# PNG parts of at most this many pixels are encoded on the loop itself (a 64x64 image, ~0.1 ms);
# larger ones on the encoding pool, off the loop
INLINE_PNG_PIXELS = 64 * 64


class GeneratorServicer(pb_grpc.GeneratorServicer):
    """Generate, GenerateStream and GetModelInfo over one model's batcher."""

    def __init__(self, info: GeneratorInfo, provider: str, batcher: Batcher, metrics: Metrics, *,
                 max_images: int, max_message_bytes: int, encode_threads: int,
                 max_stream_images: int | None = None) -> None:
        self.info = info
        self.provider = provider
        self.batcher = batcher
        self.metrics = metrics
        self.max_images = max_images  # per Generate, and per part of a stream
        self.max_stream_images = max_stream_images or max_images
        self.max_message_bytes = max_message_bytes
        self._encoders = ThreadPoolExecutor(encode_threads, thread_name_prefix="encode")

    def close(self) -> None:
        self._encoders.shutdown(wait=True)

    # -- RPCs ----------------------------------------------------------------------------------

    async def Generate(self, request: pb.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        began, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            z, classes, seed, fmt = self._validate(request, unary=True)
            assert z is not None  # unary requests get their whole latent
            job = admission.submit_async(self.batcher, z, classes, context.time_remaining())
            with admission.dropping(self.batcher, [job], context):
                found: list[pb.Image] = []
                while len(found) < job.size:
                    found += await self._next_part(job, fmt)
            return pb.GenerateResponse(images=found, model_id=self.info.model_id,
                                       first_index=0, seed=seed)
        except _Abort as e:
            code = e.code
            await context.abort(e.code, str(e))
            raise  # not reached: abort raises
        except asyncio.CancelledError:
            code = admission.ended_code(context)
            raise
        finally:
            self.metrics.finish("Generate", code.name, time.perf_counter() - began)

    async def GenerateStream(self, request: pb.GenerateRequest,
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.GenerateResponse]:
        began, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            z, classes, seed, fmt = self._validate(request, unary=False)
            per_message = self._fits(fmt)
            sent = 0
            queued: list[Job] = []  # at most two: the one handed out and the next
            with admission.dropping(self.batcher, queued, context):
                for job in self._stream_jobs(request.num_images, z, seed, classes, context,
                                             queued):
                    done = 0
                    while done < job.size:
                        part = await self._next_part(job, fmt)
                        done += len(part)
                        for i in range(0, len(part), per_message):  # each within the limit
                            chunk = part[i:i + per_message]
                            yield pb.GenerateResponse(images=chunk, model_id=self.info.model_id,
                                                      first_index=sent, seed=seed)
                            sent += len(chunk)
        except _Abort as e:
            code = e.code
            await context.abort(e.code, str(e))
        except (asyncio.CancelledError, GeneratorExit):  # the client left, or its deadline
            code = admission.ended_code(context)
            raise
        finally:
            self.metrics.finish("GenerateStream", code.name, time.perf_counter() - began)

    async def GetModelInfo(self, request: pb.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        began = time.perf_counter()
        i = self.info
        info = pb.ModelInfo(
            model_id=i.model_id, nz=i.nz, height=i.height, width=i.width, channels=i.channels,
            class_names=i.class_names, dataset=i.dataset, max_images_per_request=self.max_images,
            max_batch_size=self.batcher.max_batch, max_message_bytes=self.max_message_bytes,
            provider=self.provider, metadata=i.metadata,
            max_images_per_stream=self.max_stream_images)
        self.metrics.finish("GetModelInfo", "OK", time.perf_counter() - began)
        return info

    # -- helpers -------------------------------------------------------------------------------

    def _stream_jobs(self, n: int, z: np.ndarray | None, seed: int | None,
                     classes: np.ndarray | None, context: grpc.aio.ServicerContext,
                     queued: list[Job]) -> Iterator[Job]:
        """A stream's n images as jobs of at most max_images each, in order: the next one is
        queued before the current one is handed out, so the worker never waits on the encoder,
        and at most two parts' latents and outputs exist at a time. z is None for a seed, whose
        rows are drawn part by part (the same rows as one draw: latent.from_seed_in_parts).
        `queued` holds the jobs not yet fully handed out (what an early end must drop)."""
        step = max(1, min(self.max_images, self.batcher.max_queue // 2))  # two parts fit
        rows: Iterator[np.ndarray]
        if z is None:
            assert seed is not None  # _validate gives a seeded stream no z
            rows = latent.from_seed_in_parts(seed, n, self.info.nz, step)
        else:
            rows = (z[i:i + step] for i in range(0, n, step))
        pending: Job | None = None
        for start, part in zip(range(0, n, step), rows, strict=True):
            y = None if classes is None else classes[start:start + step]
            job = admission.submit_async(self.batcher, part, y, context.time_remaining())
            queued.append(job)
            if pending is not None:
                yield pending
                queued.remove(pending)
            pending = job
        if pending is not None:
            yield pending

    async def _next_part(self, job: Job, fmt: str) -> list[pb.Image]:
        """The job's next output slice from the worker, converted and encoded (see the module
        docstring for where)."""
        item = await admission.next_part_async(job)
        if fmt == "png" and len(item) * self.info.height * self.info.width > INLINE_PNG_PIXELS:
            return await asyncio.get_running_loop().run_in_executor(
                self._encoders, self._encode, item, fmt)
        return self._encode(item, fmt)

    def _fits(self, fmt: str) -> int:
        """How many images of `fmt` surely fit in one message (at least 1)."""
        return max(1, (self.max_message_bytes - 4096) // (self.info.image_bytes(fmt) + 32))

    def _validate(self, request: pb.GenerateRequest,
                  unary: bool) -> tuple[np.ndarray | None, np.ndarray | None, int | None, str]:
        """-> (z (n, nz) float32, labels (n,) int64 or None (unconditional), seed or None,
        format name), or _Abort(INVALID_ARGUMENT). A seeded stream gets z None: it draws its
        rows part by part."""
        bad = grpc.StatusCode.INVALID_ARGUMENT
        n, nz = request.num_images, self.info.nz
        if request.format not in FROM_PB:
            raise _Abort(bad, f"unknown image format {request.format}: use IMAGE_FORMAT_PNG, "
                              "IMAGE_FORMAT_RAW_UINT8 or IMAGE_FORMAT_RAW_FLOAT32")
        fmt = FROM_PB[request.format]
        limit = self.max_images if unary else self.max_stream_images
        if not 1 <= n <= limit:
            hint = (f" (GenerateStream takes up to {self.max_stream_images})"
                    if unary and n <= self.max_stream_images else "")
            raise _Abort(bad, f"num_images must be between 1 and {limit}, got {n}{hint}")
        try:  # before the latent: a bad label is refused without drawing anything
            classes = labels.for_request(request.labels, n, self.info.class_names)
        except labels.LabelError as e:
            raise _Abort(bad, str(e)) from None
        if unary and n > self._fits(fmt):
            raise _Abort(bad, f"{n} {fmt} images may exceed the {self.max_message_bytes}-byte "
                              "message limit: use GenerateStream or fewer images")
        seed: int | None = None
        z: np.ndarray | None = None
        try:
            if request.latent:
                if request.HasField("seed"):
                    raise _Abort(bad, "give a seed or a latent, not both")
                z = latent.from_values(request.latent, n, nz)
            else:
                seed = request.seed if request.HasField("seed") else latent.random_seed()
                if unary:
                    z = latent.from_seed(seed, n, nz)
                else:
                    latent.check_seed(seed)
        except latent.LatentError as e:
            raise _Abort(bad, str(e)) from None
        return z, classes, seed, fmt

    def _encode(self, raw: np.ndarray, fmt: str) -> list[pb.Image]:
        """A raw output slice (k, ...) -> k Image messages in format `fmt`."""
        info, kind = self.info, TO_PB[fmt]
        arrays = images.convert(raw, info.output, fmt)  # (k, H, W, C)
        return [pb.Image(data=images.encode(a, fmt), height=info.height, width=info.width,
                         channels=info.channels, format=kind) for a in arrays]


def plan(c: ServeConfig, cores: int) -> tuple[int, int]:
    """(inference workers, ONNX Runtime threads per call) for a server on `cores` cores."""
    on_cpu = wanted(c.providers) == ["cpu"]
    workers = c.inference_workers or (cores if on_cpu else 1)
    return workers, c.intra_op_threads or max(1, cores // workers)


def build(c: ServeConfig, metrics: Metrics, cores: int = 0
          ) -> tuple[ServedModel, Batcher, GeneratorServicer]:
    """The model, its batcher and the gan.v1 servicer, as `gan serve` and each Ray replica run
    them on `cores` cores (0: every usable one): one place that turns a ServeConfig's limits
    into the three, so the two cannot drift."""
    cores = cores or default_threads()
    workers, threads = plan(c, cores)
    model = ServedModel(c.model, providers=c.providers, max_batch=c.max_batch_size,
                        intra_op_threads=threads, fp16=c.fp16, cache_dir=c.trt_cache_dir)
    solo = None
    if workers > 1 and threads < cores and model.provider == "cpu":
        # a second session on every core, for a batch that runs while no other does: the
        # lowest latency when requests come one at a time (its weights are loaded twice)
        solo = ServedModel(c.model, providers="cpu", max_batch=c.max_batch_size,
                           intra_op_threads=cores).run
    batcher = Batcher(model.run, metrics=metrics, max_batch=c.max_batch_size,
                      max_delay_s=c.max_queue_delay_ms / 1000, max_queue=c.max_queue_size,
                      workers=workers, solo=solo)
    log.info("%d inference worker(s), %d ONNX Runtime thread(s) each", workers, threads)
    servicer = GeneratorServicer(model.info, model.provider, batcher, metrics,
                                 max_images=c.max_images_per_request,
                                 max_stream_images=c.max_images_per_stream,
                                 max_message_bytes=c.max_message_bytes,
                                 encode_threads=c.encode_threads or default_threads())
    return model, batcher, servicer
