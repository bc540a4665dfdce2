"""The server's Prometheus metrics, on a registry of its own (so several servers can share a
process, as the tests do), exposed over HTTP by `serve_http`."""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# Every label value a dashboard or alert may query, created at start so each series exists (at
# 0) before its first event: rate() and absent() see "none yet", not "no such metric".
# The Open Inference Protocol's are counted too: gRPC by method name, HTTP as "http:<method>".
METHODS = ("Generate", "GenerateStream", "GetModelInfo", "ModelInfer", "ModelMetadata",
           "http:ModelInfer", "http:ModelMetadata")
CODES = ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNAVAILABLE",
         "DEADLINE_EXCEEDED", "CANCELLED", "INTERNAL")
DROP_REASONS = ("deadline", "cancelled")

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


def _batch_buckets(max_batch: int) -> tuple[float, ...]:
    sizes = [1]
    while sizes[-1] < max_batch:
        sizes.append(min(sizes[-1] * 2, max_batch))
    return tuple(float(s) for s in sizes)


class Metrics:
    """Every metric the server exports (names start with gan_serve_)."""

    def __init__(self, max_batch: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gan_serve_requests", "RPCs finished, by method and gRPC status",
                                ["method", "code"], registry=r)
        self.latency = Histogram("gan_serve_request_seconds", "RPC latency, by method",
                                 ["method"], buckets=_LATENCY, registry=r)
        self.queue_wait = Histogram("gan_serve_queue_wait_seconds",
                                    "Time a request part waited in the queue before its batch ran",
                                    buckets=_LATENCY, registry=r)
        self.inference = Histogram("gan_serve_inference_seconds", "Time of one inference call",
                                   buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("gan_serve_batch_size_images", "Images per inference batch",
                                    buckets=_batch_buckets(max_batch), registry=r)
        self.images = Counter("gan_serve_images_generated", "Images computed by the model",
                              registry=r)
        self.dropped = Counter("gan_serve_images_dropped",
                               "Queued images dropped before compute, by reason",
                               ["reason"], registry=r)
        self.refused = Counter("gan_serve_refused",
                               "RPCs refused or cut off before a servicer saw them, by method "
                               "and reason (undecodable, streams_full, stalled)",
                               ["method", "reason"], registry=r)
        self.queue_depth = Gauge("gan_serve_queue_depth_images", "Images waiting in the queue",
                                 registry=r)
        for method in METHODS:
            self.latency.labels(method)
            for code in CODES:
                self.requests.labels(method, code)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        # label lookups take a lock and build a tuple: each RPC's children are looked up once
        self._finished: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def finish(self, method: str, code: str, seconds: float) -> None:
        """Count one finished RPC of `method` with status `code` and time it."""
        children = self._finished.get((method, code))
        if children is None:
            children = self._finished[method, code] = (self.requests.labels(method, code),
                                                       self.latency.labels(method))
        children[0].inc()
        children[1].observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when it has none yet): for logs and tests."""
        return self.registry.get_sample_value(name, labels) or 0.0


def serve_http(metrics: Metrics, host: str, port: int) -> WSGIServer:
    """Serve /metrics on host:port (0: a free port, see `.server_port`) in a daemon thread."""
    httpd, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    log.info("metrics on http://%s:%d/metrics", host, httpd.server_port)
    return httpd
