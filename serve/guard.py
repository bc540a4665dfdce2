"""What every RPC passes through before any servicer sees it (a gRPC server interceptor), for all
services alike (gan.v1.Generator, health, reflection, and any added later):

- Undecodable request bodies end in INVALID_ARGUMENT (gRPC's own answer is INTERNAL plus a
  traceback per request); they are logged at most once per `LOG_EVERY_S`, with a count.
- Streaming calls (GenerateStream, health Watch, reflection) are at most `max_streams` at once;
  a stream beyond that gets RESOURCE_EXHAUSTED at once, so streams can never take every slot of
  --max-concurrent-rpcs from unary calls (Generate, GetModelInfo, health Check).
- A stream whose client stops reading holds its buffers in gRPC's send forever: a send that has
  not completed after `stall_s` is cut off (the RPC's task is cancelled; the client sees
  CANCELLED).

It is a grpc.aio interceptor: every wrapper runs on the server's event loop.

Refusals and cut-offs are counted in gan_serve_refused_total{method, reason}.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from serve.metrics import Metrics

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0  # at most one log line per this many seconds for undecodable requests


class Undecodable:
    """Stands in for a request whose bytes did not parse (the deserializer must not raise)."""

    def __init__(self, size: int) -> None:
        self.size = size


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # protobuf's DecodeError, or anything a custom parser raises
            return Undecodable(len(data))

    return parse


class _RateLimitedLog:
    """One warning per interval: the first event at once, later ones counted into the next."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._since = 0

    def warn(self, message: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every_s:
                self._since += 1
                return
            more, self._since, self._last = self._since, 0, now
        log.warning("%s%s (logged at most once per %.0f s)", message,
                    f"; {more} more since the last report" if more else "", self.every_s)


class Guard(grpc.aio.ServerInterceptor):
    """The interceptor (runs on the event loop; its stall timers live there too)."""

    def __init__(self, metrics: Metrics, *, max_streams: int, stall_s: float) -> None:
        self.metrics = metrics
        self.max_streams = max_streams
        self.stall_s = stall_s
        self._open = 0  # streams open now
        self._ending: set[asyncio.Future[None]] = set()  # stalled streams being cut off
        self._undecodable = _RateLimitedLog(LOG_EVERY_S)
        self._stalled = _RateLimitedLog(LOG_EVERY_S)

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method  # type: ignore[attr-defined]  # "/gan.v1.Generator/Generate"
        fields: dict[str, Any] = {"request_deserializer": _tolerant(handler.request_deserializer)}
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                fields[kind] = self._wrap(behavior, method, kind)
        return handler._replace(**fields)  # type: ignore[attr-defined]

    def _wrap(self, behavior: Callable[..., Any], method: str, kind: str) -> Callable[..., Any]:
        streaming_in, streaming_out = kind.startswith("stream"), kind.endswith("stream")

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if streaming_in:
                return self._checked_stream(request, context, method)
            if isinstance(request, Undecodable):
                await self._refuse_undecodable(context, method, request.size)
            return request

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await behavior(await checked(request, context), context)

        async def streaming(request: Any, context: grpc.aio.ServicerContext
                            ) -> AsyncIterator[Any]:
            request = await checked(request, context)
            if self._open >= self.max_streams:
                self._count(method, "streams_full")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"{self.max_streams} streams are open, the most this server "
                                    "keeps: retry later")
            self._open += 1
            try:
                async for response in self._watched(behavior(request, context), context,
                                                    method):
                    yield response
            finally:
                self._open -= 1

        return streaming if streaming_out else unary

    async def _refuse_undecodable(self, context: grpc.aio.ServicerContext, method: str,
                                  size: int) -> None:
        self._count(method, "undecodable")
        self._undecodable.warn(f"undecodable request: {size} bytes to {method}")
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request could not be decoded as a {method} request message")

    async def _checked_stream(self, requests: AsyncIterator[Any],
                              context: grpc.aio.ServicerContext,
                              method: str) -> AsyncIterator[Any]:
        async for r in requests:
            if isinstance(r, Undecodable):
                await self._refuse_undecodable(context, method, r.size)
            yield r

    async def _watched(self, responses: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                       method: str) -> AsyncIterator[Any]:
        """`responses`, with each send (from our yield until gRPC asks for more) watched: one
        pending for longer than stall_s ends the RPC (see `_cut`)."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        try:
            async for response in responses:
                timer = loop.call_later(self.stall_s, self._cut, task, context, method)
                try:
                    yield response
                finally:
                    timer.cancel()
        finally:
            close = getattr(responses, "aclose", None)
            if close is not None:  # the servicer's own clean-up (GeneratorExit) runs now
                await close()

    def _cut(self, task: asyncio.Task[Any], context: grpc.aio.ServicerContext,
             method: str) -> None:
        """End a stalled stream: its status goes out at once (cancelling its task alone sends
        none: the client would wait for its deadline), then its task stops."""
        async def end() -> None:
            try:
                await context.abort(grpc.StatusCode.CANCELLED, "the stream was cut off: its "
                                    f"client took no message for {self.stall_s:g} s")
            except Exception:  # abort raises by design; or the RPC ended meanwhile
                pass
            task.cancel()

        ending = asyncio.ensure_future(end())
        self._ending.add(ending)  # a reference until it is done (the loop keeps only a weak one)
        ending.add_done_callback(self._ending.discard)
        self._count(method, "stalled")
        self._stalled.warn(f"cut off a {method} stream whose client stopped reading for "
                           f"{self.stall_s:g} s")

    def _count(self, method: str, reason: str) -> None:
        self.metrics.refused.labels(method.rsplit("/", 1)[-1], reason).inc()
