"""Dynamic batching: inference worker threads coalescing queued requests into large batches.

Requests (Jobs) wait in a FIFO queue bounded in images. The worker takes images from the front
until the batch holds `max_batch` images, splitting a job that does not fit (its remaining images
go first in the next batch), so a request's parts run in order. It waits for a batch to fill only
while the oldest job has waited less than `max_delay_s`. Jobs that were cancelled or whose
deadline passed are dropped before compute. After inference, each part's slice of the output is
put on its job's `parts` queue, in order, where the job's handler picks it up and converts and
encodes it: encoding never runs on the worker. A job of a coroutine (gRPC's asyncio server, Ray
Serve) has `AsyncParts`: the worker hands a whole batch's slices to each event loop in ONE
thread-safe call (one wake-up of the loop per batch, not per request); a job of a thread (the HTTP
front end, tests) has a plain queue.

There may be several workers on one session (ONNX Runtime runs concurrent calls; on a CPU, two
single-threaded calls at once make more images per second than one call on two threads, see
docs/benchmarks.md): the first idle one takes whatever is queued, the others join only for a
backlog (`_may_start`). A batch that runs while no other does may use `solo`, the model on
every core, so one request at a time is not slowed down by the plan made for load. A job split
across batches that finish out of order is still answered in order: a part that is early waits
in its job until the parts before it are handed out.

For a conditional model each job carries one label per image; a batch concatenates its parts'
labels exactly as it concatenates their latents, so requests with different labels share a batch
and every image keeps its own label.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from serve.metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue has no room for the request's images."""


class ShuttingDown(Exception):
    """The server no longer accepts requests."""


class Dropped(Exception):
    """The request was cancelled or its deadline passed while queued; no compute was spent."""

    def __init__(self, reason: str, images: int) -> None:
        super().__init__(f"{images} queued images dropped ({reason})")
        self.reason = reason  # "cancelled" or "deadline"


Item = np.ndarray | BaseException  # an output slice (k, ...), or what ends the job


class Parts(Protocol):
    """Where a job's items go, in order: queue.SimpleQueue (a thread waits) or AsyncParts."""

    def put(self, item: Item) -> None: ...


class AsyncParts:
    """A job's items for a coroutine on `loop`: `put` from any thread, `await get()` on the loop.

    The worker does not call `put` one job at a time: `hand_out` gives each loop all of a
    batch's items in one call_soon_threadsafe."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._thread = threading.get_ident()  # made on the loop's thread, by its handler
        self._items: collections.deque[Item] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Item) -> None:
        if threading.get_ident() == self._thread:
            self.put_here(item)
        else:
            self.loop.call_soon_threadsafe(self.put_here, item)

    def put_here(self, item: Item) -> None:
        """`put`, on the loop's own thread."""
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Item:
        while not self._items:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


def _put_all(pairs: list[tuple[AsyncParts, Item]]) -> None:
    for parts, item in pairs:
        parts.put_here(item)


def hand_out(pairs: list[tuple[Parts, Item]]) -> None:
    """Give each item to its parts: plain queues at once, AsyncParts one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[AsyncParts, Item]]] = {}
    for parts, item in pairs:
        if isinstance(parts, AsyncParts):
            by_loop.setdefault(parts.loop, []).append((parts, item))
        else:
            parts.put(item)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, mine)
        except RuntimeError:  # that loop is closed: nobody waits for these any more
            log.debug("dropped %d results for a closed event loop", len(mine))


@dataclass(eq=False)
class Job:
    """One request: its latent (and labels), its deadline, its progress, and the queue its
    results go to."""

    z: np.ndarray  # (n, nz) float32
    labels: np.ndarray | None = None  # (n,) int64 for a conditional model, else None
    deadline: float | None = None  # time.monotonic() after which nobody waits for the result
    enqueued: float = field(default_factory=time.monotonic)
    taken: int = 0  # images already handed to batches
    handed: int = 0  # images already handed out to `parts` (in order)
    early: dict[int, np.ndarray] | None = None  # finished slices by start, waiting for `handed`
    ended: str | None = None  # why its RPC ended ("cancelled" or "deadline"); None: still live
    # output slices (k, ...) of the model's raw output, in request order, or the exception that
    # ends the job (Dropped, or an inference failure)
    parts: Parts = field(default_factory=queue.SimpleQueue)  # type: ignore[assignment]

    @property
    def size(self) -> int:
        return len(self.z)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


Run = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # z (B, nz), labels (B,) -> output


class Batcher:
    """The queue and its inference workers; `run` is the model call (z, labels) -> outputs."""

    def __init__(self, run: Run, *, metrics: Metrics,
                 max_batch: int, max_delay_s: float, max_queue: int, workers: int = 1,
                 solo: Run | None = None) -> None:
        self._run = run
        # what a worker runs when no other batch is running (the model on every core; with
        # several single-threaded workers, a lone request would otherwise use one core)
        self._solo = solo
        self._metrics = metrics
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._jobs: collections.deque[Job] = collections.deque()
        self._queued = 0  # images waiting (not yet taken) across self._jobs
        self._cond = threading.Condition()
        self._accepting = True
        self._closing = False
        self._handing = threading.Lock()  # one batch's results handed out at a time: in order
        self._busy = 0  # workers running a batch now
        self._backlog = max(1, max_batch // 2)  # queued images that call in a second worker
        self._workers = [threading.Thread(target=self._loop, name=f"inference-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise QueueFull / ShuttingDown at once."""
        with self._cond:
            if not self._accepting:
                raise ShuttingDown("the server is shutting down: retry on another replica")
            if job.ended:  # its RPC ended before it got here: answer its handler at once
                self._metrics.dropped.labels(job.ended).inc(job.size)
                job.parts.put(Dropped(job.ended, job.size))
                return
            if self._queued + job.size > self.max_queue:
                raise QueueFull(f"queue full: {self._queued} of {self.max_queue} images are "
                                f"waiting and this request needs {job.size}; retry later")
            self._jobs.append(job)
            self._queued += job.size
            self._metrics.queue_depth.set(self._queued)
            self._cond.notify()

    def discard(self, job: Job, reason: str = "cancelled") -> None:
        """Drop what is still queued of `job` (its RPC ended); a no-op once it was all taken."""
        with self._cond:
            job.ended = reason
            if job.taken < job.size and job in self._jobs:
                self._jobs.remove(job)
                self._drop(job, reason)

    def _drop(self, job: Job, reason: str) -> None:
        left = job.size - job.taken
        self._queued -= left
        self._metrics.queue_depth.set(self._queued)
        self._metrics.dropped.labels(reason).inc(left)
        job.parts.put(Dropped(reason, left))
        log.debug("dropped %d queued images (%s)", left, reason)

    def stop_accepting(self) -> None:
        """Refuse new jobs; queued ones run at once (no more arrivals can fill a batch)."""
        with self._cond:
            self._accepting = False
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting, run what is queued (no more waiting for batches to fill), stop."""
        with self._cond:
            self._accepting = False
            self._closing = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not (self._jobs and self._may_start()):
                    self._cond.wait()
                if not self._jobs:
                    return  # closing and drained
                self._wait_to_fill()
                parts = self._take()
                alone = self._busy == 0  # no other batch runs: this one may use every core
                self._busy += 1
                if self._jobs:  # more is queued: an idle worker may take the next batch now
                    self._cond.notify()
            try:
                if parts:
                    self._compute(parts, self._solo if alone and self._solo else self._run)
            except Exception as e:  # never let a worker die: fail this batch only
                log.exception("batch of %d parts failed", len(parts))
                with self._handing:
                    hand_out([(job.parts, e) for job, _start, _stop in parts])
            finally:
                with self._cond:
                    self._busy -= 1

    def _may_start(self) -> bool:
        """Under the lock: whether an idle worker takes what is queued now. The first always
        does; another joins only for a backlog (half a batch or more waiting) or a drain. Two
        workers splitting a trickle of small requests would each run tiny batches: more calls,
        more wake-ups of the event loop, and no more images per second."""
        return (self._busy == 0 or self._queued >= self._backlog or not self._accepting)

    def _wait_to_fill(self) -> None:
        """Under the lock: wait until the batch is full or the oldest job waited max_delay_s."""
        while self._jobs and self._queued < self.max_batch and self._accepting:
            left = self._jobs[0].enqueued + self.max_delay_s - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _take(self) -> list[tuple[Job, int, int]]:
        """Under the lock: (job, start, stop) parts of up to max_batch images, FIFO."""
        parts: list[tuple[Job, int, int]] = []
        room = self.max_batch
        now = time.monotonic()
        while self._jobs and room:
            job = self._jobs[0]
            if job.ended or job.expired(now):
                self._jobs.popleft()
                self._drop(job, job.ended or "deadline")
                continue
            start = job.taken
            stop = min(job.size, start + room)
            parts.append((job, start, stop))
            self._metrics.queue_wait.observe(now - job.enqueued)
            job.taken = stop
            room -= stop - start
            self._queued -= stop - start
            if job.taken == job.size:
                self._jobs.popleft()
        self._metrics.queue_depth.set(self._queued)
        return parts

    def _compute(self, parts: list[tuple[Job, int, int]], run: Run) -> None:
        """Run one batch with `run` and hand each part's output slice to its job's handler."""
        z, labels = _gather(parts)  # (B, nz), (B,) or None
        began = time.perf_counter()
        out = run(z, labels)  # (B, C, H, W) or (B, H, W, C); a failure fails this batch
        self._metrics.inference.observe(time.perf_counter() - began)
        self._metrics.batch_size.observe(len(z))
        self._metrics.images.inc(len(z))
        offset = 0
        with self._handing:  # handing out under the lock: another worker's later part waits
            pairs: list[tuple[Parts, Item]] = []
            for job, start, stop in parts:
                pairs += _in_order(job, start, out[offset:offset + stop - start])
                offset += stop - start
            hand_out(pairs)


def _in_order(job: Job, start: int, part: np.ndarray) -> list[tuple[Parts, Item]]:
    """(parts, slice) pairs to hand out now for `job`, whose slice from `start` just finished:
    none while an earlier slice is still running elsewhere, else it and the early ones after it."""
    if start == job.handed and not job.early:  # the common case: nothing is out of order
        job.handed += len(part)
        return [(job.parts, part)]
    if job.early is None:
        job.early = {}
    job.early[start] = part
    ready: list[tuple[Parts, Item]] = []
    while job.handed in job.early:
        part = job.early.pop(job.handed)
        job.handed += len(part)
        ready.append((job.parts, part))
    return ready


def _gather(parts: list[tuple[Job, int, int]]) -> tuple[np.ndarray, np.ndarray | None]:
    """The batch's inputs: z (B, nz) and labels (B,) (None for an unconditional model), row b
    belonging to the same image in both."""
    if len(parts) == 1:  # no copy for a batch of one request
        job, start, stop = parts[0]
        return job.z[start:stop], None if job.labels is None else job.labels[start:stop]
    z = np.concatenate([job.z[start:stop] for job, start, stop in parts])
    if parts[0][0].labels is None:
        return z, None
    labelled = [job.labels[start:stop] for job, start, stop in parts if job.labels is not None]
    if len(labelled) != len(parts):  # the servicer gives every job of a conditional model labels
        raise ValueError("a batch mixes jobs with and without labels")
    return z, np.concatenate(labelled)
