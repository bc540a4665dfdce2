"""gan.v1.Generator on Ray Serve: each replica is one served model with its own dynamic batcher.

A replica builds what `gan serve` builds (ServedModel, Batcher, Metrics, GeneratorServicer) and
answers Ray Serve's gRPC proxy by calling the same servicer methods, so validation, latents,
labels and encoding are the plain server's code. The proxy (started with ADD_SERVICER in its
`grpc_servicer_functions`) exposes Generate, GenerateStream and GetModelInfo; every answer carries
the replica that made it as trailing metadata (`gan-replica`: Ray's replica id, `gan-replica-pid`:
its process).

    serve run serve.ray_app:app model=g.onnx replicas=2     # args: ServeConfig/RayConfig fields
    serve run deploy/ray/serve.yaml                         # the `serve deploy` / KubeRay config
    gan serve g.onnx --ray --replicas 2                     # serve/ray_launcher.py

Ray Serve's proxy does not pass the client's deadline on to the replica; a call that Ray cancels
(its client went away) drops its queued images, as in `gan serve`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from collections.abc import Generator as Gen
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from ray import serve as ray_serve
from ray.serve.grpc_util import RayServegRPCContext

from serve._proto.gan.v1 import generator_pb2 as pb
from serve.config import ServeConfig, ServeConfigError
from serve.metrics import Metrics
from serve.ray_config import DEPLOYMENT_NAME, RayConfig, deployment_options, onnx_threads
from serve.servicer import build

log = logging.getLogger(__name__)

# the proxy's grpc_servicer_functions entry (it imports the function by this path)
ADD_SERVICER = "serve._proto.gan.v1.generator_pb2_grpc.add_GeneratorServicer_to_server"
REPLICA_KEY, PID_KEY = "gan-replica", "gan-replica-pid"
_DONE = object()


class _Aborted(Exception):
    """An RPC ended with the status code already set on Ray's context."""


class _Context:
    """The part of grpc.ServicerContext that GeneratorServicer uses, over Ray Serve's context:
    `abort` sets the status for the proxy, and the callbacks run when the call ends (also when
    the proxy cancels it), which drops the request's queued images."""

    def __init__(self, ray_context: RayServegRPCContext, replica: list[tuple[str, str]]) -> None:
        self._ray = ray_context
        self._ray.set_trailing_metadata(replica)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] | None = []  # None once the call ended

    def time_remaining(self) -> float | None:
        return None  # the proxy does not pass the client's deadline on

    def add_callback(self, callback: Callable[[], object]) -> bool:
        with self._lock:
            if self._callbacks is None:
                return False
            self._callbacks.append(callback)
            return True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._ray.set_code(code)
        self._ray.set_details(details)
        raise _Aborted(details)

    def end(self) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks or [], None
        for callback in callbacks:
            callback()


@ray_serve.deployment(name=DEPLOYMENT_NAME)
class Generator:
    """One replica: the model, its batcher and the servicer, answering the gRPC proxy."""

    def __init__(self, settings: dict[str, Any], onnx_threads: int) -> None:
        c = ServeConfig(**settings)
        self.metrics = Metrics(c.max_batch_size)
        self.model, self.batcher, self.servicer = build(c, self.metrics, onnx_threads)
        # the servicer blocks while a request is queued: one thread per request in flight (Ray's
        # own pool for sync methods is a few threads, which would cap the batches)
        self._pool = ThreadPoolExecutor(c.rpc_threads, thread_name_prefix="rpc")
        replica = ray_serve.get_replica_context().replica_tag
        self._replica = [(REPLICA_KEY, replica), (PID_KEY, str(os.getpid()))]
        log.info("replica %s serving %s on %s", replica, self.model.info.model_id,
                 self.model.provider)

    async def Generate(self, request: pb.GenerateRequest,
                       grpc_context: RayServegRPCContext) -> pb.GenerateResponse:
        context = _Context(grpc_context, self._replica)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self.servicer.Generate, request, context)
        finally:
            context.end()

    async def GenerateStream(self, request: pb.GenerateRequest, grpc_context: RayServegRPCContext
                             ) -> AsyncIterator[pb.GenerateResponse]:
        context = _Context(grpc_context, self._replica)
        parts: Gen[pb.GenerateResponse, None, None] = self.servicer.GenerateStream(
            request, context)  # type: ignore[arg-type, assignment]
        loop = asyncio.get_running_loop()
        running: asyncio.Future[Any] | None = None
        try:
            while True:
                running = loop.run_in_executor(self._pool, next, parts, _DONE)
                part = await running
                running = None
                if part is _DONE:
                    return
                yield part
        finally:
            context.end()  # a part still being made (running) now ends with CANCELLED
            if running is None:  # stopped at a yield: closing counts the call as cancelled
                parts.close()

    async def GetModelInfo(self, request: pb.GetModelInfoRequest,
                           grpc_context: RayServegRPCContext) -> pb.ModelInfo:
        context = _Context(grpc_context, self._replica)
        return self.servicer.GetModelInfo(request, context)  # type: ignore[arg-type]

    def __del__(self) -> None:
        """Ray Serve calls this after draining the replica (graceful_shutdown_timeout_s)."""
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.close()  # runs what is still queued, then stops the worker
            self._pool.shutdown(wait=False)


def bind(config: ServeConfig, ray: RayConfig) -> ray_serve.Application:
    """The application for `serve.run`: one Generator deployment with these options."""
    return Generator.options(**deployment_options(config, ray)).bind(  # type: ignore[attr-defined]
        dataclasses.asdict(config), onnx_threads(config, ray))


def app(args: dict[str, Any]) -> ray_serve.Application:
    """Ray Serve's application builder: `serve run serve.ray_app:app model=g.onnx replicas=2`
    or a config file's `args:`. Keys are ServeConfig and RayConfig field names; values may be
    strings (command line) or YAML scalars."""
    serve_fields = _typed(ServeConfig, args)
    ray_fields = _typed(RayConfig, args)
    unknown = set(args) - set(serve_fields) - set(ray_fields)
    if unknown:
        names = [f.name for f in dataclasses.fields(ServeConfig) + dataclasses.fields(RayConfig)]
        raise ServeConfigError(f"unknown argument(s) {', '.join(sorted(unknown))}: use "
                               f"{', '.join(names)}")
    if not serve_fields.get("model"):
        raise ServeConfigError("give the model: serve run serve.ray_app:app model=g.onnx")
    model = serve_fields["model"]
    if os.path.isfile(model):  # a path on this machine: the replicas may start elsewhere
        serve_fields["model"] = os.path.abspath(model)
    return bind(ServeConfig(**serve_fields), RayConfig(**ray_fields))


def _typed(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """The entries of `args` that are fields of dataclass `cls`, converted to the field's type
    ("int", "float | None", ... as written in the class)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in args:
            continue
        value, kind = args[f.name], str(f.type).replace(" | None", "")
        if isinstance(value, str) and kind in ("int", "float", "bool"):
            try:
                value = (value.lower() in ("1", "true", "yes") if kind == "bool"
                         else int(value) if kind == "int" else float(value))
            except ValueError:
                raise ServeConfigError(f"{f.name}={value!r} is not a valid {kind}") from None
        out[f.name] = value
    return out
