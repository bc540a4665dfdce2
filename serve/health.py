"""The standard grpc.health.v1 service, with a drain that load balancers can follow.

Like grpcio-health-checking's HealthServicer (Check, non-blocking Watch, `set`,
`enter_graceful_shutdown`), plus `end_watches()`: a Watch never ends by itself, so without it
one open watch (Kubernetes, load balancers) held the whole shutdown grace period although it
carries no work. Watches hold no RPC thread (gRPC's non-blocking streaming: responses go out
through a callback).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2 as pb
from grpc_health.v1 import health_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Health"].full_name  # "grpc.health.v1.Health"

Send = Callable[[pb.HealthCheckResponse | None], None]  # None ends the stream (status OK)


class HealthServicer(pb_grpc.HealthServicer):
    """Statuses by service name ("" is the whole server)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, int] = {"": pb.HealthCheckResponse.SERVING}
        self._watches: dict[int, tuple[str, Send]] = {}
        self._draining = False

    def Check(self, request: pb.HealthCheckRequest,
              context: grpc.ServicerContext) -> pb.HealthCheckResponse:
        with self._lock:
            status = self._status.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return pb.HealthCheckResponse(status=status)

    def Watch(self, request: pb.HealthCheckRequest, context: grpc.ServicerContext,  # type: ignore[override]
              send_response_callback: Send | None = None) -> None:
        assert send_response_callback is not None, "registered as non-blocking"
        send = send_response_callback
        key = id(send)
        with self._lock:
            status = self._status.get(request.service, pb.HealthCheckResponse.SERVICE_UNKNOWN)
            send(pb.HealthCheckResponse(status=status))
            self._watches[key] = (request.service, send)
        if not context.add_callback(lambda: self._forget(key)):
            self._forget(key)

    Watch.experimental_non_blocking = True  # type: ignore[attr-defined]

    def _forget(self, key: int) -> None:
        with self._lock:
            self._watches.pop(key, None)

    def set(self, service: str, status: int) -> None:
        """Set a service's status and tell its watchers (ignored once draining)."""
        with self._lock:
            if self._draining:
                return
            self._set(service, status)

    def _set(self, service: str, status: int) -> None:
        self._status[service] = status
        for watched, send in self._watches.values():
            if watched == service:
                send(pb.HealthCheckResponse(status=status))

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING, for good: Check answers it and watchers are told."""
        with self._lock:
            if not self._draining:
                for service in list(self._status):
                    self._set(service, pb.HealthCheckResponse.NOT_SERVING)
                self._draining = True

    def end_watches(self) -> None:
        """End every open Watch with status OK (after they have seen NOT_SERVING)."""
        with self._lock:
            ending, self._watches = list(self._watches.values()), {}
        for _service, send in ending:
            send(None)
