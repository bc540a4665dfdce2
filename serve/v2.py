"""The Open Inference Protocol's gRPC service (inference.GRPCInferenceService) on the served model.

It runs on the gan.v1 server's port, batcher and metrics: ModelInfer queues its latent on the
same batcher as Generate (so both share batches) and answers with the raw ONNX Runtime output
in raw_output_contents, as tritonclient expects. Inputs may come as raw_input_contents (what
tritonclient sends) or typed contents. Validation is serve.tensors'; failures end with the
status code of their Abort; every RPC is counted by method and code like gan.v1's.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import time
from collections.abc import Callable, Mapping

import grpc

from serve import admission
from serve._proto.inference.v2 import grpc_service_pb2 as pb
from serve._proto.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from serve.admission import Abort
from serve.batcher import Batcher
from serve.metrics import Metrics
from serve.tensors import EXTENSIONS, VERSION, InputTensor, V2Model

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "dcgan-forge"

# the InferTensorContents field holding each datatype the model takes
_TYPED = {"FP32": "fp32_contents", "INT64": "int64_contents"}


def server_version() -> str:
    try:
        return importlib.metadata.version("dcgan-forge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Health, metadata and ModelInfer for one model; `ready()` is False while draining."""

    def __init__(self, model: V2Model, batcher: Batcher, metrics: Metrics,
                 ready: Callable[[], bool]) -> None:
        self.model = model
        self.batcher = batcher
        self.metrics = metrics
        self.ready = ready

    async def ServerLive(self, request: pb.ServerLiveRequest,
                   context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return await self._counted("ServerLive", context, lambda: pb.ServerLiveResponse(live=True))

    async def ServerReady(self, request: pb.ServerReadyRequest,
                    context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return await self._counted("ServerReady", context,
                             lambda: pb.ServerReadyResponse(ready=self.ready()))

    async def ModelReady(self, request: pb.ModelReadyRequest,
                   context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        def answer() -> pb.ModelReadyResponse:
            self.model.check(request.name, request.version)
            return pb.ModelReadyResponse(ready=self.ready())

        return await self._counted("ModelReady", context, answer)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                       context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return await self._counted("ServerMetadata", context, lambda: pb.ServerMetadataResponse(
            name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                      context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        def answer() -> pb.ModelMetadataResponse:
            self.model.check(request.name, request.version)
            return pb.ModelMetadataResponse(**self.model.metadata())  # type: ignore[arg-type]

        return await self._counted("ModelMetadata", context, answer)

    async def ModelInfer(self, request: pb.ModelInferRequest,
                   context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        return await self._counted("ModelInfer", context, lambda: self._infer(request, context))

    # -- helpers -------------------------------------------------------------------------------

    async def _infer(self, request: pb.ModelInferRequest,
               context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        self.model.check(request.model_name, request.model_version)
        admitted = self.model.admit(_inputs(request), _parameters(request.parameters),
                                    [o.name for o in request.outputs])
        job = admission.submit_async(self.batcher, admitted.z, admitted.labels,
                                     context.time_remaining())
        with admission.dropping(self.batcher, [job], context):
            raw = await admission.collect_async(job)  # (n, C, H, W) float32 or (n, H, W, C) u8
        out = self.model.output
        response = pb.ModelInferResponse(
            model_name=self.model.name, model_version=VERSION, id=request.id,
            outputs=[pb.ModelInferResponse.InferOutputTensor(
                name=out.name, datatype=out.datatype, shape=raw.shape)],
            raw_output_contents=[raw.tobytes()])  # little-endian: every platform ORT runs on
        if admitted.seed is not None:
            response.parameters["seed"].uint64_param = admitted.seed
        return response

    async def _counted(self, method: str, context: grpc.aio.ServicerContext,  # noqa: ANN202
                       answer: Callable):
        """Run `answer()` (its result is awaited when it is a coroutine); count and time the
        RPC; an Abort ends it with its code."""
        began = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            result = answer()
            return (await result) if inspect.isawaitable(result) else result
        except Abort as e:
            code = e.code
            await context.abort(e.code, str(e))
        except asyncio.CancelledError:  # the client left, or its deadline passed
            code = admission.ended_code(context)
            raise
        except Exception:  # a bug: gRPC answers UNKNOWN; count it as the failure it is
            code = grpc.StatusCode.INTERNAL
            raise
        finally:
            self.metrics.finish(method, code.name, time.perf_counter() - began)


def _inputs(request: pb.ModelInferRequest) -> list[InputTensor]:
    """The request's inputs with their data: raw_input_contents (one per input, in order) or
    each input's typed contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                    f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one "
                    "per input, in the order of inputs")
    tensors = []
    for i, t in enumerate(request.inputs):
        typed = t.HasField("contents")
        if raw and typed:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"input {t.name} has contents and "
                        "raw_input_contents: send one or the other")
        data: bytes | list[object] | None = raw[i] if raw else None
        if typed and t.datatype in _TYPED:
            data = list(getattr(t.contents, _TYPED[t.datatype]))
        tensors.append(InputTensor(name=t.name, datatype=t.datatype, shape=tuple(t.shape),
                                   data=data))
    return tensors


def _parameters(params: Mapping[str, pb.InferParameter]) -> dict[str, object]:
    """InferParameter map -> plain values (bool, int, str or float)."""
    out: dict[str, object] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def add_to_server(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
