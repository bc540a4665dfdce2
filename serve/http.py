"""The Open Inference Protocol's HTTP/REST API (and the page at `/`) on the served model.

A Starlette app served by uvicorn in a thread beside the gRPC server (`HttpFrontEnd`), on the
same model, batcher, limits and metrics (requests are counted as method "http:<Endpoint>" with
the gRPC code name they end with). Endpoints, as the v2 protocol names them:

    GET  /v2/health/live | /v2/health/ready            200, or 503 while not ready
    GET  /v2                                           server metadata
    GET  /v2/models/NAME[/versions/V]                  model metadata (+ "parameters": the
                                                       model's self-description as strings)
    GET  /v2/models/NAME[/versions/V]/ready            200, or 503 while not ready
    POST /v2/models/NAME[/versions/V]/infer            JSON tensors, or the binary tensor data
                                                       extension (tritonclient's default)
    POST /v2/repository/index                          [{"name", "version", "state"}]: the
                                                       read-only index of Triton's model
                                                       repository extension (the page's way
                                                       to find the model's name)
    GET  /                                             serve/static/index.html, if installed

Errors are JSON {"error": "..."}: 400 bad input, 404 unknown model, 413 body over the message
limit, 503 full queue or draining. Infer requests run on Starlette's thread pool, where they
wait for the batcher like gRPC handlers do.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gan.errors import UserError
from serve import admission
from serve.admission import Abort
from serve.batcher import Batcher
from serve.metrics import Metrics
from serve.tensors import EXTENSIONS, VERSION, InputTensor, V2Model
from serve.v2 import SERVER_NAME, server_version

log = logging.getLogger(__name__)

HEADER_LENGTH = "inference-header-content-length"  # the binary tensor data extension's header
_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
           grpc.StatusCode.RESOURCE_EXHAUSTED: 503, grpc.StatusCode.UNAVAILABLE: 503,
           grpc.StatusCode.DEADLINE_EXCEEDED: 504}
_BAD = grpc.StatusCode.INVALID_ARGUMENT

Handler = Callable[[Request], Awaitable[Response]]


def app(model: V2Model, batcher: Batcher, metrics: Metrics, ready: Callable[[], bool], *,
        max_body_bytes: int) -> Starlette:
    """The v2 REST app for `model` on `batcher`; `ready()` is False while draining."""

    def counted(method: str, handle: Callable[[Request], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            began, code = time.perf_counter(), grpc.StatusCode.OK
            try:
                return await handle(request)
            except Abort as e:
                code = e.code
                return JSONResponse({"error": str(e)}, status_code=_STATUS.get(e.code, 500))
            except Exception:  # a bug: Starlette answers 500; count it as the failure it is
                code = grpc.StatusCode.INTERNAL
                raise
            finally:
                metrics.finish(f"http:{method}", code.name, time.perf_counter() - began)
        return endpoint

    def checked(request: Request) -> None:
        model.check(request.path_params["name"], request.path_params.get("version", ""))

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def server_ready(request: Request) -> Response:
        return JSONResponse({"ready": ready()}, status_code=200 if ready() else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": server_version(),
                             "extensions": list(EXTENSIONS)})

    async def model_metadata(request: Request) -> Response:
        checked(request)
        return JSONResponse({**model.metadata(), "parameters": model.parameters()})

    async def model_ready(request: Request) -> Response:
        checked(request)
        return JSONResponse({"name": model.name, "ready": ready()},
                            status_code=200 if ready() else 503)

    async def infer(request: Request) -> Response:
        checked(request)
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            return JSONResponse({"error": f"request body of {size} bytes exceeds the "
                                          f"{max_body_bytes}-byte message limit"}, 413)
        if request.headers.get("content-encoding", "identity") != "identity":
            raise Abort(_BAD, "compressed request bodies are not supported: send it plain")
        body = await request.body()
        if len(body) > max_body_bytes:  # a body sent without a length
            return JSONResponse({"error": f"request body of {len(body)} bytes exceeds the "
                                          f"{max_body_bytes}-byte message limit"}, 413)
        return await run_in_threadpool(_infer, model, batcher, body,
                                       request.headers.get(HEADER_LENGTH))

    async def repository_index(request: Request) -> Response:
        state = "READY" if ready() else "UNAVAILABLE"
        return JSONResponse([{"name": model.name, "version": VERSION, "state": state}])

    async def page(request: Request) -> Response:
        index = importlib.resources.files("serve").joinpath("static/index.html")
        if not index.is_file():
            return JSONResponse({"error": "no page is installed (serve/static/index.html)"}, 404)
        return HTMLResponse(index.read_text(encoding="utf-8"))

    routes = [Route("/", page, methods=["GET"]),
              Route("/v2/health/live", counted("ServerLive", live), methods=["GET"]),
              Route("/v2/health/ready", counted("ServerReady", server_ready), methods=["GET"]),
              Route("/v2", counted("ServerMetadata", server_metadata), methods=["GET"]),
              Route("/v2/repository/index", counted("RepositoryIndex", repository_index),
                    methods=["POST"])]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(base, counted("ModelMetadata", model_metadata), methods=["GET"]),
                   Route(base + "/ready", counted("ModelReady", model_ready), methods=["GET"]),
                   Route(base + "/infer", counted("ModelInfer", infer), methods=["POST"])]
    return Starlette(routes=routes)


def _infer(model: V2Model, batcher: Batcher, body: bytes, header_length: str | None) -> Response:
    """One infer request (JSON header, then binary tensor data if header_length is set) ->
    its response, in the same encoding the request asks for. Runs on a pool thread."""
    header, blobs = _split(body, header_length)
    inputs, binary_out = _inputs(header, blobs)
    outputs = header.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise Abort(_BAD, "outputs must be a list of {\"name\": ...} objects")
    binary_out = binary_out or any(_params(o).get("binary_data") is True for o in outputs)
    admitted = model.admit(inputs, _params(header), [str(o.get("name")) for o in outputs])
    raw = admission.collect(admission.submit(batcher, admitted.z, admitted.labels))
    out: dict[str, Any] = {**model.output.as_dict(), "shape": list(raw.shape)}
    reply: dict[str, Any] = {"model_name": model.name, "model_version": VERSION, "outputs": [out]}
    if isinstance(header.get("id"), str):
        reply["id"] = header["id"]
    if admitted.seed is not None:
        reply["parameters"] = {"seed": admitted.seed}
    if not binary_out:
        out["data"] = raw.ravel().tolist()  # flat, row-major
        return Response(json.dumps(reply), media_type="application/json")
    data = raw.tobytes()  # little-endian, row-major
    out["parameters"] = {"binary_data_size": len(data)}
    text = json.dumps(reply).encode()
    return Response(text + data, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(text))})


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header (a dict) and the binary tensor data after it."""
    if header_length is not None and not header_length.isdigit():
        raise Abort(_BAD, f"{HEADER_LENGTH} must be a byte count, got {header_length!r}")
    cut = len(body) if header_length is None else int(header_length)
    if cut > len(body):
        raise Abort(_BAD, f"{HEADER_LENGTH} {cut} exceeds the body's {len(body)} bytes")
    try:
        header = json.loads(body[:cut])
    except (ValueError, UnicodeDecodeError) as e:
        raise Abort(_BAD, f"the request is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise Abort(_BAD, "the request must be a JSON object with \"inputs\"")
    return header, body[cut:]


def _inputs(header: dict[str, Any], blobs: bytes) -> tuple[list[InputTensor], bool]:
    """The request's input tensors (binary ones sliced from `blobs` in order) and whether the
    request asks for binary outputs."""
    inputs = header.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise Abort(_BAD, "inputs must be a list of tensor objects")
    tensors, offset = [], 0
    for t in inputs:
        name, datatype, shape = t.get("name"), t.get("datatype"), t.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str) or not (
                isinstance(shape, list) and all(type(d) is int for d in shape)):
            raise Abort(_BAD, "each input needs a name, a datatype and a shape (integers)")
        size = _params(t).get("binary_data_size")
        data: bytes | list[object] | None = t.get("data")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(blobs):
                raise Abort(_BAD, f"input {name}: binary_data_size {size!r} does not fit the "
                                  f"{len(blobs) - offset} bytes of binary data left")
            data, offset = blobs[offset:offset + size], offset + size
        elif data is not None and not isinstance(data, list):
            raise Abort(_BAD, f"input {name}: data must be a JSON array")
        tensors.append(InputTensor(name=name, datatype=datatype, shape=tuple(shape), data=data))
    if offset != len(blobs):
        raise Abort(_BAD, f"{len(blobs) - offset} bytes of binary data belong to no input")
    return tensors, _params(header).get("binary_data_output") is True


def _params(obj: dict[str, Any]) -> dict[str, Any]:
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise Abort(_BAD, "parameters must be a JSON object")
    return params


class HttpFrontEnd:
    """uvicorn in a daemon thread on a socket bound at construction (so a taken port fails
    before the model loads, like the gRPC port)."""

    def __init__(self, host: str, port: int) -> None:
        bare = host.strip("[]")
        family = socket.AF_INET6 if ":" in bare else socket.AF_INET
        try:
            self._sock = socket.create_server((bare, port), family=family)
        except OSError as e:
            raise UserError(f"cannot serve HTTP on {host}:{port} ({e.strerror}): pick another "
                            "--http-port (0 picks a free one)") from None
        self.port: int = self._sock.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, application: Starlette, grace_s: float) -> None:
        config = uvicorn.Config(application, lifespan="off", log_config=None, access_log=False,
                                timeout_graceful_shutdown=max(1, math.ceil(grace_s)))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, args=([self._sock],),
                                        name="http", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():  # bounded by the loop start
            time.sleep(0.01)
        log.info("v2 HTTP on port %d", self.port)

    def begin_stop(self) -> None:
        """Stop accepting connections; in-flight requests finish (within the grace period)."""
        if self._server is not None:
            self._server.should_exit = True

    def close(self, timeout_s: float) -> None:
        """Wait up to timeout_s for the drain, then release the socket."""
        self.begin_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._sock.close()

