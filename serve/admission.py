"""Admission: a validated request's latent (and labels) becomes a batcher Job, is queued, and
its raw output comes back. Shared by every front end (gan.v1 Generate, the v2 gRPC and HTTP
APIs), so they queue, fail and drop requests the same way and share batches.

Coroutines (the asyncio gRPC server, Ray Serve replicas) use `submit_async` and `next_part_async`
/ `collect_async`: the job's results come to their event loop (batcher.AsyncParts), and an RPC
that ends while its job is queued (its task is cancelled: the client went away or its deadline
passed) drops what is still queued through `dropping`. Threads (the HTTP front end) use `submit`,
`next_part` and `collect`.

Every failure is an `Abort` carrying the gRPC status code it ends with (the HTTP front end maps
codes to HTTP statuses): a full queue is RESOURCE_EXHAUSTED, shutting down UNAVAILABLE, a
request dropped while queued DEADLINE_EXCEEDED or CANCELLED, a failed batch INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np

from serve.batcher import AsyncParts, Batcher, Dropped, Item, Job, QueueFull, ShuttingDown

log = logging.getLogger(__name__)


class Abort(Exception):
    """A request ends with this status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def submit(batcher: Batcher, z: np.ndarray, labels: np.ndarray | None) -> Job:
    """Queue z (n, nz) [labels (n,)] as one job whose results a thread waits for (no deadline:
    the HTTP front end's requests carry none)."""
    job = Job(z=z, labels=labels)
    _queue(batcher, job)
    return job


def submit_async(batcher: Batcher, z: np.ndarray, labels: np.ndarray | None,
                 time_remaining: float | None) -> Job:
    """Queue z (n, nz) [labels (n,)] as one job whose results come to the running event loop;
    `time_remaining` (s, None: no deadline) is the RPC's. Run the RPC's wait in `dropping`."""
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    job = Job(z=z, labels=labels, deadline=deadline,
              parts=AsyncParts(asyncio.get_running_loop()))
    _queue(batcher, job)
    return job


def _queue(batcher: Batcher, job: Job) -> None:
    try:
        batcher.submit(job)
    except QueueFull as e:
        raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
    except ShuttingDown as e:
        raise Abort(grpc.StatusCode.UNAVAILABLE, str(e)) from None


@contextlib.contextmanager
def dropping(batcher: Batcher, jobs: list[Job], context: Any) -> Iterator[None]:
    """Whatever ends the block early (its task cancelled, an Abort, a closed stream) drops what
    is still queued of `jobs` (no compute is spent on it), as "deadline" when the RPC's
    `context` has no time left, else "cancelled"."""
    try:
        yield
    except BaseException:
        reason = _end_reason(context)
        for job in jobs:
            batcher.discard(job, reason)
        raise


def next_part(job: Job) -> np.ndarray:
    """The job's next raw output slice (k, ...) from the worker, in request order."""
    return _checked(job.parts.get())  # type: ignore[attr-defined]  # a SimpleQueue


async def next_part_async(job: Job) -> np.ndarray:
    """`next_part` for a job of `submit_async`."""
    assert isinstance(job.parts, AsyncParts)
    return _checked(await job.parts.get())


async def collect_async(job: Job) -> np.ndarray:
    """`collect` for a job of `submit_async`."""
    parts, rows = [], 0
    while rows < job.size:
        parts.append(await next_part_async(job))
        rows += len(parts[-1])
    return _joined(parts)


def _checked(item: Item) -> np.ndarray:
    """An item from the worker: the output slice, or the Abort its failure ends in."""
    if isinstance(item, Dropped):
        raise Abort(_code(item.reason), str(item))
    if isinstance(item, BaseException):
        log.error("a batch failed: %r", item)
        raise Abort(grpc.StatusCode.INTERNAL, "inference failed: see the server log")
    return item


def collect(job: Job) -> np.ndarray:
    """The job's whole raw output (n, ...), its parts joined (no copy for a job of one part)."""
    parts, rows = [], 0
    while rows < job.size:
        parts.append(next_part(job))
        rows += len(parts[-1])
    return _joined(parts)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def ended_code(context: Any) -> grpc.StatusCode:
    """The status of an RPC whose task was cancelled: its deadline passed, or its client left."""
    return _code(_end_reason(context))


def _code(reason: str) -> grpc.StatusCode:
    """The status a request dropped for `reason` ends with (a DROP_REASONS name)."""
    return grpc.StatusCode.DEADLINE_EXCEEDED if reason == "deadline" else grpc.StatusCode.CANCELLED


def _end_reason(context: Any) -> str:
    """Why an RPC ended while its job may still be queued: "deadline" or "cancelled" (once an
    RPC's deadline has passed, time_remaining() is 0)."""
    remaining = context.time_remaining()
    return "deadline" if remaining is not None and remaining <= 0 else "cancelled"
