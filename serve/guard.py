"""What every RPC passes through before any servicer sees it (a gRPC server interceptor), for all
services alike (gan.v1.Generator, health, reflection, and any added later):

- Undecodable request bodies end in INVALID_ARGUMENT (gRPC's own answer is INTERNAL plus a
  traceback per request); they are logged at most once per `LOG_EVERY_S`, with a count.
- Server-streaming calls (GenerateStream, health Watch) hold at most `max_streams` RPC slots at
  once; a stream beyond that gets RESOURCE_EXHAUSTED at once. The other slots of --rpc-threads
  stay free for unary calls (Generate, GetModelInfo, health Check), whatever streams do.
- A stream whose client stops reading blocks its handler thread in gRPC's send: a send that has
  not completed after `stall_s` is cut off (the RPC is cancelled; the client sees CANCELLED).

Refusals and cut-offs are counted in gan_serve_refused_total{method, reason}.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
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


class _Stalls:
    """A watchdog over in-progress stream sends: `arm` before handing gRPC a message, `disarm`
    once gRPC asks for the next one; a send armed for longer than limit_s cancels its RPC.
    Checked every limit_s / 4, so a stalled stream is cut between 1 and 1.25 x limit_s."""

    def __init__(self, limit_s: float, on_cut: Callable[[str], None]) -> None:
        self.limit_s = limit_s
        self._on_cut = on_cut
        self._armed: dict[int, tuple[float, grpc.ServicerContext, str]] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-stalls", daemon=True)
        self._thread.start()

    def arm(self, context: grpc.ServicerContext, method: str) -> int:
        key = next(self._keys)
        with self._lock:
            self._armed[key] = (time.monotonic() + self.limit_s, context, method)
        return key

    def disarm(self, key: int) -> None:
        with self._lock:
            self._armed.pop(key, None)

    def _run(self) -> None:
        while not self._closed.wait(self.limit_s / 4):
            now = time.monotonic()
            with self._lock:
                late = [k for k, (due, _, _) in self._armed.items() if due <= now]
                cut = [self._armed.pop(k) for k in late]
            for _due, context, method in cut:
                context.cancel()  # wakes the handler blocked in gRPC's send
                self._on_cut(method)

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


class Guard(grpc.ServerInterceptor):
    """The interceptor; `close()` stops its watchdog thread."""

    def __init__(self, metrics: Metrics, *, max_streams: int, stall_s: float) -> None:
        self.metrics = metrics
        self.max_streams = max_streams
        self._streams = threading.BoundedSemaphore(max_streams)
        self._undecodable = _RateLimitedLog(LOG_EVERY_S)
        self._stalled = _RateLimitedLog(LOG_EVERY_S)
        self._stalls = _Stalls(stall_s, self._cut)

    def close(self) -> None:
        self._stalls.close()

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method: str = details.method  # type: ignore[attr-defined]  # "/gan.v1.Generator/Generate"
        fields: dict[str, Any] = {"request_deserializer": _tolerant(handler.request_deserializer)}
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, kind)
            if behavior is not None:
                fields[kind] = self._wrap(behavior, method, kind)
        return handler._replace(**fields)

    def _wrap(self, behavior: Callable[..., Any], method: str, kind: str) -> Callable[..., Any]:
        streaming_in, streaming_out = kind.startswith("stream"), kind.endswith("stream")
        non_blocking = getattr(behavior, "experimental_non_blocking", False)

        def wrapped(request: Any, context: grpc.ServicerContext, *more: Any) -> Any:
            if streaming_in:
                request = self._checked_stream(request, context, method)
            elif isinstance(request, Undecodable):
                self._refuse_undecodable(context, method, request.size)
            if streaming_out:
                self._take_stream_slot(context, method)
            result = behavior(request, context, *more)
            return self._watched(result, context, method) if streaming_out and not \
                non_blocking else result

        for attribute in ("experimental_non_blocking", "experimental_thread_pool"):
            if hasattr(behavior, attribute):
                setattr(wrapped, attribute, getattr(behavior, attribute))
        return wrapped

    def _refuse_undecodable(self, context: grpc.ServicerContext, method: str, size: int) -> None:
        self._count(method, "undecodable")
        self._undecodable.warn(f"undecodable request: {size} bytes to {method}")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"the request could not be decoded as a {method} request message")

    def _checked_stream(self, requests: Iterator[Any], context: grpc.ServicerContext,
                        method: str) -> Iterator[Any]:
        for r in requests:  # consumed on the handler's thread, so abort() ends the RPC
            if isinstance(r, Undecodable):
                self._refuse_undecodable(context, method, r.size)
            yield r

    def _take_stream_slot(self, context: grpc.ServicerContext, method: str) -> None:
        if not self._streams.acquire(blocking=False):
            self._count(method, "streams_full")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.max_streams} streams are open, the most this server keeps: "
                          "retry later")
        if not context.add_callback(self._streams.release):  # runs once, when the RPC ends
            self._streams.release()  # it has ended already

    def _watched(self, responses: Iterator[Any], context: grpc.ServicerContext,
                 method: str) -> Iterator[Any]:
        """`responses`, with each send (from our yield until gRPC asks for more) watched."""
        key = None
        try:
            for response in responses:
                key = self._stalls.arm(context, method)
                yield response
                self._stalls.disarm(key)
        finally:
            if key is not None:
                self._stalls.disarm(key)
            close = getattr(responses, "close", None)
            if close is not None:  # the servicer's own clean-up (GeneratorExit) runs now
                close()

    def _cut(self, method: str) -> None:
        self._count(method, "stalled")
        self._stalled.warn(f"cut off a {method} stream whose client stopped reading for "
                           f"{self._stalls.limit_s:g} s")

    def _count(self, method: str, reason: str) -> None:
        self.metrics.refused.labels(method.rsplit("/", 1)[-1], reason).inc()
