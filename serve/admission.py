"""Admission: a validated request's latent (and labels) becomes a batcher Job, is queued, and
its raw output comes back. Shared by every front end (gan.v1 Generate, the v2 gRPC and HTTP
APIs), so they queue, fail and drop requests the same way and share batches.

Every failure is an `Abort` carrying the gRPC status code it ends with (the HTTP front end maps
codes to HTTP statuses): a full queue is RESOURCE_EXHAUSTED, shutting down UNAVAILABLE, a
request dropped while queued DEADLINE_EXCEEDED or CANCELLED, a failed batch INTERNAL.
"""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np

from serve.batcher import Batcher, Dropped, Job, QueueFull, ShuttingDown

log = logging.getLogger(__name__)


class Abort(Exception):
    """A request ends with this status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def submit(batcher: Batcher, z: np.ndarray, labels: np.ndarray | None,
           context: grpc.ServicerContext | None = None) -> Job:
    """Queue z (n, nz) [labels (n,)] as one job. With an RPC `context`, the job takes the RPC's
    deadline and the RPC's end drops whatever of it is still queued."""
    deadline = None
    if context is not None:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
    job = Job(z=z, labels=labels, deadline=deadline)
    if context is not None and not context.add_callback(
            lambda: batcher.discard(job, _end_reason(context))):
        raise Abort(grpc.StatusCode.CANCELLED, "the request ended before it was queued")
    try:
        batcher.submit(job)
    except QueueFull as e:
        raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
    except ShuttingDown as e:
        raise Abort(grpc.StatusCode.UNAVAILABLE, str(e)) from None
    return job


def next_part(job: Job) -> np.ndarray:
    """The job's next raw output slice (k, ...) from the worker, in request order."""
    item = job.parts.get()
    if isinstance(item, Dropped):
        code = (grpc.StatusCode.DEADLINE_EXCEEDED if item.reason == "deadline"
                else grpc.StatusCode.CANCELLED)
        raise Abort(code, str(item))
    if isinstance(item, BaseException):
        log.error("a batch failed: %r", item)
        raise Abort(grpc.StatusCode.INTERNAL, "inference failed: see the server log")
    return item


def collect(job: Job) -> np.ndarray:
    """The job's whole raw output (n, ...), its parts joined (no copy for a job of one part)."""
    parts, rows = [], 0
    while rows < job.size:
        part = next_part(job)
        parts.append(part)
        rows += len(part)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _end_reason(context: grpc.ServicerContext) -> str:
    """Why an RPC ended while its job may still be queued: "deadline" or "cancelled" (in the
    callback of an RPC its deadline ended, time_remaining() is 0)."""
    remaining = context.time_remaining()
    return "deadline" if remaining is not None and remaining <= 0 else "cancelled"
