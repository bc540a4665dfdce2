"""Dynamic batching: one inference worker thread coalescing queued requests into large batches.

Requests (Jobs) wait in a FIFO queue bounded in images. The worker takes images from the front
until the batch holds `max_batch` images, splitting a job that does not fit (its remaining images
go first in the next batch), so a request's parts run in order. It waits for a batch to fill only
while the oldest job has waited less than `max_delay_s`. Jobs that were cancelled or whose
deadline passed are dropped before compute. After inference, each part's slice of the output is
put on its job's `parts` queue, in order, where the job's RPC handler thread picks it up and
converts and encodes it: encoding runs on the handlers (in parallel), never on the worker, and
with no extra thread hop between the worker and the response.

For a conditional model each job carries one label per image; a batch concatenates its parts'
labels exactly as it concatenates their latents, so requests with different labels share a batch
and every image keeps its own label.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(eq=False)
class Job:
    """One request: its latent (and labels), its deadline, its progress, and the queue its
    results go to."""

    z: np.ndarray  # (n, nz) float32
    labels: np.ndarray | None = None  # (n,) int64 for a conditional model, else None
    deadline: float | None = None  # time.monotonic() after which nobody waits for the result
    enqueued: float = field(default_factory=time.monotonic)
    taken: int = 0  # images already handed to batches
    ended: str | None = None  # why its RPC ended ("cancelled" or "deadline"); None: still live
    # output slices (k, ...) of the model's raw output, in request order, or the exception that
    # ends the job (Dropped, or an inference failure)
    parts: queue.SimpleQueue[np.ndarray | BaseException] = field(
        default_factory=queue.SimpleQueue)

    @property
    def size(self) -> int:
        return len(self.z)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


Run = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # z (B, nz), labels (B,) -> output


class Batcher:
    """The queue and its one inference worker; `run` is the model call (z, labels) -> outputs."""

    def __init__(self, run: Run, *, metrics: Metrics,
                 max_batch: int, max_delay_s: float, max_queue: int) -> None:
        self._run = run
        self._metrics = metrics
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._jobs: collections.deque[Job] = collections.deque()
        self._queued = 0  # images waiting (not yet taken) across self._jobs
        self._cond = threading.Condition()
        self._accepting = True
        self._closing = False
        self._worker = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._worker.start()

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
            self._cond.notify()

    def close(self) -> None:
        """Stop accepting, run what is queued (no more waiting for batches to fill), stop."""
        with self._cond:
            self._accepting = False
            self._closing = True
            self._cond.notify()
        self._worker.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if not self._jobs:
                    return  # closing and drained
                self._wait_to_fill()
                parts = self._take()
            if parts:
                try:
                    self._compute(parts)
                except Exception as e:  # never let the one worker die: fail this batch only
                    log.exception("batch of %d parts failed", len(parts))
                    for job, _start, _stop in parts:
                        job.parts.put(e)

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

    def _compute(self, parts: list[tuple[Job, int, int]]) -> None:
        """Run one batch and hand each part's output slice to its job's handler."""
        z, labels = _gather(parts)  # (B, nz), (B,) or None
        began = time.perf_counter()
        out = self._run(z, labels)  # (B, C, H, W) or (B, H, W, C); a failure fails this batch
        self._metrics.inference.observe(time.perf_counter() - began)
        self._metrics.batch_size.observe(len(z))
        self._metrics.images.inc(len(z))
        offset = 0
        for job, start, stop in parts:
            n = stop - start
            job.parts.put(out[offset:offset + n])
            offset += n


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
