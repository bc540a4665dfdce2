"""The standard grpc.health.v1 service, with a drain that load balancers can follow.

Like grpcio-health-checking's asyncio HealthServicer (Check, Watch, `set`,
`enter_graceful_shutdown`), plus `end_watches()`: a Watch never ends by itself, so without it
one open watch (Kubernetes, load balancers) held the whole shutdown grace period although it
carries no work. Every method runs on the server's event loop (watches hold no thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2 as pb
from grpc_health.v1 import health_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Health"].full_name  # "grpc.health.v1.Health"


class HealthServicer(pb_grpc.HealthServicer):
    """Statuses by service name ("" is the whole server)."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {"": pb.HealthCheckResponse.SERVING}
        # each open Watch: its service and the queue of what it sends next (None: end)
        self._watches: dict[object, tuple[str, asyncio.Queue[pb.HealthCheckResponse | None]]] = {}
        self._draining = False

    async def Check(self, request: pb.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> pb.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return pb.HealthCheckResponse(status=status)

    async def Watch(self, request: pb.HealthCheckRequest,  # type: ignore[override]
                    context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[pb.HealthCheckResponse]:
        key = object()
        sends: asyncio.Queue[pb.HealthCheckResponse | None] = asyncio.Queue()
        self._watches[key] = (request.service, sends)
        try:
            status = self._status.get(request.service, pb.HealthCheckResponse.SERVICE_UNKNOWN)
            yield pb.HealthCheckResponse(status=status)
            while (response := await sends.get()) is not None:
                yield response
        finally:
            self._watches.pop(key, None)

    def set(self, service: str, status: int) -> None:
        """Set a service's status and tell its watchers (ignored once draining)."""
        if not self._draining:
            self._set(service, status)

    def _set(self, service: str, status: int) -> None:
        self._status[service] = status
        for watched, sends in self._watches.values():
            if watched == service:
                sends.put_nowait(pb.HealthCheckResponse(status=status))

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING, for good: Check answers it and watchers are told."""
        if not self._draining:
            for service in list(self._status):
                self._set(service, pb.HealthCheckResponse.NOT_SERVING)
            self._draining = True

    def end_watches(self) -> None:
        """End every open Watch with status OK (after they have seen NOT_SERVING)."""
        for _service, sends in self._watches.values():
            sends.put_nowait(None)
