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

import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
from ray import serve as ray_serve
from ray.serve.grpc_util import RayServegRPCContext

from serve._proto.gan.v1 import generator_pb2 as pb
from serve.config import ServeConfig, ServeConfigError
from serve.metrics import Metrics
from serve.ray_config import DEPLOYMENT_NAME, RayConfig, deployment_options, replica_cores
from serve.servicer import build

log = logging.getLogger(__name__)

# the proxy's grpc_servicer_functions entry (it imports the function by this path)
ADD_SERVICER = "serve._proto.gan.v1.generator_pb2_grpc.add_GeneratorServicer_to_server"
REPLICA_KEY, PID_KEY = "gan-replica", "gan-replica-pid"


class _Aborted(Exception):
    """An RPC ended with the status code already set on Ray's context."""


class _Context:
    """The part of grpc.aio.ServicerContext that GeneratorServicer uses, over Ray Serve's
    context: `abort` sets the status for the proxy. A call the proxy cancels cancels the
    servicer's coroutine, which drops the request's queued images."""

    def __init__(self, ray_context: RayServegRPCContext, replica: list[tuple[str, str]]) -> None:
        self._ray = ray_context
        self._ray.set_trailing_metadata(replica)

    def time_remaining(self) -> float | None:
        return None  # the proxy does not pass the client's deadline on

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._ray.set_code(code)
        self._ray.set_details(details)
        raise _Aborted(details)


@ray_serve.deployment(name=DEPLOYMENT_NAME)
class Generator:
    """One replica: the model, its batcher and the servicer, answering the gRPC proxy on the
    replica's event loop (a queued request holds no thread)."""

    def __init__(self, settings: dict[str, Any], cores: int) -> None:
        c = ServeConfig(**settings)
        self.metrics = Metrics(c.max_batch_size)
        self.model, self.batcher, self.servicer = build(c, self.metrics, cores)
        replica = ray_serve.get_replica_context().replica_tag
        self._replica = [(REPLICA_KEY, replica), (PID_KEY, str(os.getpid()))]
        log.info("replica %s serving %s on %s", replica, self.model.info.model_id,
                 self.model.provider)

    async def Generate(self, request: pb.GenerateRequest,
                       grpc_context: RayServegRPCContext) -> pb.GenerateResponse:
        context = _Context(grpc_context, self._replica)
        return await self.servicer.Generate(request, context)  # type: ignore[arg-type]

    async def GenerateStream(self, request: pb.GenerateRequest, grpc_context: RayServegRPCContext
                             ) -> AsyncIterator[pb.GenerateResponse]:
        context = _Context(grpc_context, self._replica)
        async for part in self.servicer.GenerateStream(request, context):  # type: ignore[arg-type]
            yield part

    async def GetModelInfo(self, request: pb.GetModelInfoRequest,
                           grpc_context: RayServegRPCContext) -> pb.ModelInfo:
        context = _Context(grpc_context, self._replica)
        return await self.servicer.GetModelInfo(request, context)  # type: ignore[arg-type]

    def __del__(self) -> None:
        """Ray Serve calls this after draining the replica (graceful_shutdown_timeout_s)."""
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.close()  # runs what is still queued, then stops the worker
            self.servicer.close()


def bind(config: ServeConfig, ray: RayConfig) -> ray_serve.Application:
    """The application for `serve.run`: one Generator deployment with these options."""
    return Generator.options(**deployment_options(config, ray)).bind(  # type: ignore[attr-defined]
        dataclasses.asdict(config), replica_cores(ray))


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
