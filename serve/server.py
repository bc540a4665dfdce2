"""The gRPC server: model + batcher + servicer, health and reflection, metrics, graceful stop.

The server is grpc.aio on one event loop (uvloop when installed), in a thread of its own, so
`start()` and `stop()` stay plain calls for `gan serve`, tests and embedders. Every handler is a
coroutine: a queued request holds no thread, only its task; the one inference worker is a thread
(ONNX Runtime runs outside the GIL) that hands each batch's results to the loop in one call.

Life cycle: `start()` checks the model, binds (a taken port is refused: SO_REUSEPORT is off),
loads and warms up the model, and only then reports SERVING. `stop()` is the drain:
1. health reports NOT_SERVING to Check and to open Watch streams; for `drain_s` seconds every
   request is still served (load balancers see NOT_SERVING and move away);
2. new RPCs and connections are refused (UNAVAILABLE), health Watch streams end (status OK: they
   carry no work and must not hold the drain), queued requests run at once;
3. in-flight requests get `grace_s` seconds to finish, then are cancelled; the worker stops.
`run_until_signal` is `gan serve`: start, wait for SIGTERM/SIGINT, stop (a second signal ends the
drain moment early), return. Every RPC passes serve.guard first (undecodable bodies, stream
slots, stalled readers).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gan.errors import UserError
from gan.model import read_info
from serve import health, v2
from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc
from serve.batcher import Batcher
from serve.config import ServeConfig, message_options, request_bytes
from serve.guard import Guard
from serve.metrics import Metrics, serve_http
from serve.servicer import SERVICE_NAME, GeneratorServicer, build
from serve.tensors import V2Model
from serve.tls import server_credentials
from serve.v2 import InferenceServicer

if TYPE_CHECKING:
    from serve.http import HttpFrontEnd

log = logging.getLogger(__name__)

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (about half the per-RPC cost of asyncio's at concurrency 1,
    bench/serve_load.py), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GeneratorServer:
    """One served model. `start()` returns the bound "host:port"; `stop()` drains and stops."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.port = 0
        self.metrics_port: int | None = None
        self.metrics = Metrics(config.max_batch_size)
        self._stopped = threading.Event()
        self._drain_over = threading.Event()
        self._httpd: WSGIServer | None = None
        self.http_port: int | None = None  # the v2 REST API's port, when --http-port is set
        self._http: HttpFrontEnd | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the server's loop and wait for its result here."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def start(self) -> str:
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop",
                                        daemon=True)
        self._thread.start()
        try:
            self._on_loop(self._start())
        except BaseException:
            self._end_loop()
            raise
        log.info("gan.v1.Generator serving %s on %s", self.model.info.model_id, self.address)
        return self.address

    async def _start(self) -> None:
        c = self.config
        nz = read_info(c.model).nz  # quick (no warm-up): the receive limit depends on it
        options = [*message_options(c.max_message_bytes,
                                    request_bytes(nz, c.max_images_per_request)),
                   ("grpc.so_reuseport", 0)]  # else a second server shares a taken port
        self.guard = Guard(self.metrics, max_streams=c.stream_slots, stall_s=c.stream_stall_s)
        self._server = grpc.aio.server(interceptors=[self.guard], options=options,
                                       maximum_concurrent_rpcs=c.max_concurrent_rpcs)
        self.batcher: Batcher | None = None
        self.servicer: GeneratorServicer | None = None
        try:
            self._bind()  # taken ports fail now, not after a long model load or engine build
            await self._load_and_start()
        except BaseException:  # leave no port, thread or session behind
            await self._server.stop(None)
            self._release()
            raise

    async def _load_and_start(self) -> None:
        c = self.config
        # the load and warm-up block this loop: nothing is served on it yet
        self.model, self.batcher, self.servicer = build(c, self.metrics)
        log.info("serving on provider %s", self.model.provider)
        pb_grpc.add_GeneratorServicer_to_server(self.servicer, self._server)
        self.v2_model = V2Model(c.v2_name, self.model.info, self.model.provider,
                                max_images=c.max_images_per_request,
                                max_message_bytes=c.max_message_bytes)
        v2.add_to_server(InferenceServicer(self.v2_model, self.batcher, self.metrics,
                                           self.ready), self._server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, v2.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._server)
        await self._server.start()
        if self._http is not None:
            from serve import http

            self._http.start(http.app(self.v2_model, self.batcher, self.metrics, self.ready,
                                      max_body_bytes=c.max_message_bytes), c.grace_s)
        for service in ("", SERVICE_NAME, v2.SERVICE_NAME):  # loaded and warmed up by now
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def _release(self, grace_s: float = 0.0) -> None:
        """Close what start() opened besides the gRPC server: HTTP, worker, pools, metrics."""
        if self._http is not None:
            self._http.close(grace_s)
        if self.batcher is not None:
            self.batcher.close()  # runs what is still queued, then stops the worker
        if self.servicer is not None:
            self.servicer.close()
        self._close_metrics()

    def _end_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _bind(self) -> None:
        c = self.config
        target = _address(c.host, c.port)
        try:
            if c.tls_cert is not None and c.tls_key is not None:
                creds = server_credentials(c.tls_cert, c.tls_key, c.tls_client_ca)
                self.port = self._server.add_secure_port(target, creds)
            else:
                self.port = self._server.add_insecure_port(target)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise UserError(f"cannot listen on {target}: is the port in use, or the host not an "
                            "address of this machine? (--port 0 picks a free port)")
        if c.metrics_port is not None:
            try:
                self._httpd = serve_http(self.metrics, c.metrics_host, c.metrics_port)
            except OSError as e:
                raise UserError(f"cannot serve metrics on {c.metrics_host}:{c.metrics_port} "
                                f"({e.strerror}): pick another --metrics-port") from None
            self.metrics_port = self._httpd.server_port
        if c.http_port is not None:
            from serve.http import HttpFrontEnd  # starlette and uvicorn load only when used

            self._http = HttpFrontEnd(c.host, c.http_port)
            self.http_port = self._http.port

    def _close_metrics(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def ready(self) -> bool:
        """Whether the v2 APIs report ready: started and not stopping."""
        return not self._stopped.is_set()

    @property
    def address(self) -> str:
        return _address(self.config.host, self.port)

    def stop(self, grace_s: float | None = None) -> None:
        """The drain (see the module docstring), then stop the worker. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.grace_s if grace_s is None else grace_s
        try:
            self._on_loop(self._stop(grace))
        finally:
            self._end_loop()
        log.info("stopped")

    async def _stop(self, grace: float) -> None:
        c = self.config
        self.health.enter_graceful_shutdown()  # NOT_SERVING: load balancers move away
        loop = asyncio.get_running_loop()
        if c.drain_s > 0:
            log.info("draining: NOT_SERVING for %.1f s while still serving", c.drain_s)
            await loop.run_in_executor(None, self._drain_over.wait, c.drain_s)
        log.info("shutting down: finishing in-flight requests (grace %.1f s)", grace)
        assert self.batcher is not None, "stop() after a successful start()"
        self.batcher.stop_accepting()  # queued requests run now, new ones get UNAVAILABLE
        if self._http is not None:
            self._http.begin_stop()  # no new connections; in-flight requests finish
        stopping = asyncio.ensure_future(self._server.stop(grace))  # in-flight: `grace` s
        await asyncio.sleep(0)  # new RPCs are refused from here on
        self.health.end_watches()  # they carry no work: they must not hold the drain
        await stopping
        # its own graceful timeout is `grace` too; closing joins threads: off the loop
        await loop.run_in_executor(None, self._release, grace + 1.0)

    def end_drain(self) -> None:
        """End the NOT_SERVING moment of a running stop() now (a second SIGTERM/SIGINT)."""
        self._drain_over.set()


def run_until_signal(config: ServeConfig, on_started=None) -> None:
    """`gan serve`: start, call `on_started(server)`, wait for SIGTERM or SIGINT, drain, stop."""
    server = GeneratorServer(config)
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        if stop.is_set():  # a second signal: no more waiting for load balancers
            server.end_drain()
        stop.set()

    # Installed before the (possibly long) model load: a SIGTERM then stops right after start.
    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        try:
            if on_started is not None and not stop.is_set():
                on_started(server)
            stop.wait()
        finally:
            server.stop()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
