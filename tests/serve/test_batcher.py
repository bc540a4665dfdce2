"""The batcher on its own, torch-free: a numpy "model" that records every batch it is given.

The model holds its first batch until the test releases it, so the jobs submitted meanwhile are
all queued when the worker next takes a batch: which images share a batch is then fixed by the
batching rule alone, never by timing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from serve.batcher import Batcher, Dropped, Job, QueueFull, ShuttingDown
from serve.metrics import Metrics

NZ = 3


class GatedModel:
    """z (B, nz) [, labels (B,)] -> (B, nz + 1): z * 2 and the label (-1 without one). Records
    each batch's rows (z[:, 0]); holds the first call until `release()`; fails a batch that
    holds a z[:, 0] in `poison`."""

    def __init__(self, poison: frozenset[float] = frozenset()) -> None:
        self.batches: list[list[float]] = []
        self.started, self.gate = threading.Event(), threading.Event()
        self.poison = poison

    def __call__(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        self.started.set()
        assert self.gate.wait(timeout=30), "the test never released the model"
        rows = z[:, 0].tolist()
        self.batches.append(rows)
        if self.poison & set(rows):
            raise RuntimeError("poisoned batch")
        tag = np.full((len(z), 1), -1.0, np.float32) if labels is None else \
            labels.astype(np.float32)[:, None]
        return np.concatenate([z * 2, tag], axis=1)

    def release(self) -> None:
        self.gate.set()


def latent(first: float, n: int) -> np.ndarray:
    """n rows whose z[:, 0] is first, first + 1, ...: each image is recognisable by its row."""
    z = np.zeros((n, NZ), np.float32)
    z[:, 0] = np.arange(first, first + n)
    return z


def results(job: Job) -> np.ndarray:
    """All of job's output rows, in order (raises what ended it instead)."""
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < job.size:
        item = job.parts.get(timeout=30)
        if isinstance(item, BaseException):
            raise item
        parts.append(item)
    return np.concatenate(parts)


@pytest.fixture
def model() -> GatedModel:
    return GatedModel()


@pytest.fixture
def batcher(model: GatedModel) -> Iterator[Batcher]:
    b = Batcher(model, metrics=Metrics(4), max_batch=4, max_delay_s=0.0, max_queue=16)
    try:
        yield b
    finally:
        model.release()
        b.close()


def hold(batcher: Batcher, model: GatedModel) -> Job:
    """Submit a 1-image job and wait until the worker is inside the model with it."""
    first = Job(z=latent(100, 1))
    batcher.submit(first)
    assert model.started.wait(timeout=30)
    return first


def test_queued_jobs_are_merged_and_split_in_order(batcher: Batcher, model: GatedModel) -> None:
    first = hold(batcher, model)
    jobs = [Job(z=latent(0, 3)), Job(z=latent(10, 3)), Job(z=latent(20, 2))]
    for job in jobs:
        batcher.submit(job)
    model.release()
    for job in [first, *jobs]:
        out = results(job)
        np.testing.assert_array_equal(out[:, :NZ], job.z * 2)  # its own rows, in order
    # max_batch 4: b0 b1 b2 c0 | c1 c2 d0 d1 (the middle job split across two batches)
    assert model.batches == [[100], [0, 1, 2, 10], [11, 12, 20, 21]]


def test_labels_travel_with_their_latents(batcher: Batcher, model: GatedModel) -> None:
    hold(batcher, model)
    a = Job(z=latent(0, 3), labels=np.array([5, 6, 7], np.int64))
    b = Job(z=latent(10, 2), labels=np.array([1, 2], np.int64))
    batcher.submit(a)
    batcher.submit(b)
    model.release()
    assert results(a)[:, NZ].tolist() == [5, 6, 7]
    assert results(b)[:, NZ].tolist() == [1, 2]
    assert model.batches[1] == [0, 1, 2, 10]  # a and b shared a batch


def test_a_full_queue_refuses_at_once_and_nothing_is_lost(batcher: Batcher,
                                                          model: GatedModel) -> None:
    hold(batcher, model)
    queued = [Job(z=latent(10 * i, 4)) for i in range(4)]  # 16 images: the queue is full
    for job in queued:
        batcher.submit(job)
    with pytest.raises(QueueFull, match="queue full: 16 of 16"):
        batcher.submit(Job(z=latent(99, 1)))
    model.release()
    for job in queued:
        np.testing.assert_array_equal(results(job)[:, :NZ], job.z * 2)


def test_expired_and_cancelled_jobs_are_dropped_before_compute(batcher: Batcher,
                                                                model: GatedModel) -> None:
    hold(batcher, model)
    late = Job(z=latent(0, 2), deadline=time.monotonic() - 1)
    gone = Job(z=latent(10, 3))
    kept = Job(z=latent(20, 1))
    for job in (late, gone, kept):
        batcher.submit(job)
    batcher.discard(gone)
    model.release()
    for job, reason in ((late, "deadline"), (gone, "cancelled")):
        with pytest.raises(Dropped) as e:
            results(job)
        assert e.value.reason == reason
    assert results(kept)[:, 0].tolist() == [40.0]
    assert model.batches == [[100], [20]]  # no compute spent on the dropped images


def test_a_failing_batch_fails_only_its_jobs() -> None:
    model = GatedModel(poison=frozenset({0.0}))
    batcher = Batcher(model, metrics=Metrics(4), max_batch=4, max_delay_s=0.0, max_queue=16)
    try:
        hold(batcher, model)
        bad, good = Job(z=latent(0, 4)), Job(z=latent(10, 2))
        batcher.submit(bad)
        batcher.submit(good)
        model.release()
        with pytest.raises(RuntimeError, match="poisoned"):
            results(bad)
        np.testing.assert_array_equal(results(good)[:, :NZ], good.z * 2)  # the worker lives on
    finally:
        model.release()
        batcher.close()


def test_close_runs_what_is_queued_then_refuses(batcher: Batcher, model: GatedModel) -> None:
    hold(batcher, model)
    queued = Job(z=latent(0, 3))
    batcher.submit(queued)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    done: queue.SimpleQueue[bool] = queue.SimpleQueue()
    threading.Thread(target=lambda: done.put(bool(results(queued).size))).start()
    model.release()
    closing.join(timeout=30)
    assert not closing.is_alive() and done.get(timeout=30)
    with pytest.raises(ShuttingDown):
        batcher.submit(Job(z=latent(50, 1)))


class OrderedGates:
    """A model whose every call waits for its own gate, opened by the test in any order: with two
    workers, batch 2 can be made to finish before batch 1. Records the first row of each call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[float, threading.Event] = {}
        self.arrived = threading.Condition(self.lock)

    def __call__(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        gate = threading.Event()
        with self.arrived:
            self.calls[float(z[0, 0])] = gate
            self.arrived.notify_all()
        assert gate.wait(timeout=30), "the test never opened this call's gate"
        return z * 2

    def wait_for(self, *firsts: float) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: all(f in self.calls for f in firsts), 30)

    def open(self, first: float) -> None:
        self.calls[first].set()


def test_two_workers_hand_out_a_split_job_in_order() -> None:
    """A 6-image job split over two batches that two workers run at once: the second batch ends
    first, yet the job's parts come out in request order (the early one waits in the job)."""
    model = OrderedGates()
    b = Batcher(model, metrics=Metrics(4), max_batch=3, max_delay_s=0.0, max_queue=16,
                workers=2)
    try:
        job = Job(z=latent(0, 6))
        b.submit(job)
        model.wait_for(0.0, 3.0)  # both workers are inside the model: rows 0-2 and 3-5
        model.open(3.0)  # the second half finishes first...
        with pytest.raises(queue.Empty):
            job.parts.get(timeout=0.3)  # ...and is held back: the first half is not out yet
        model.open(0.0)
        np.testing.assert_array_equal(results(job), job.z * 2)
    finally:
        for gate in model.calls.values():
            gate.set()
        b.close()


def test_async_parts_reach_the_event_loop_in_one_call_per_batch() -> None:
    """Jobs of coroutines get their slices on their loop; one batch of three jobs wakes the loop
    with one call (hand_out groups by loop), and each job still gets exactly its rows."""
    import asyncio

    from serve.batcher import AsyncParts

    async def run() -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        calls = 0
        real = loop.call_soon_threadsafe

        def counted(callback: object, *args: object) -> object:
            nonlocal calls
            # the batcher's calls, not asyncio.to_thread's
            calls += getattr(callback, "__name__", "") == "_put_all"
            return real(callback, *args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        model = GatedModel()
        b = Batcher(model, metrics=Metrics(4), max_batch=4, max_delay_s=0.0, max_queue=16)
        try:
            first = Job(z=latent(100, 1), parts=AsyncParts(loop))
            b.submit(first)
            await asyncio.to_thread(model.started.wait, 30)
            jobs = [Job(z=latent(10 * k, 1), parts=AsyncParts(loop)) for k in range(3)]
            for job in jobs:
                b.submit(job)
            model.release()
            got = [await job.parts.get() for job in [first, *jobs]]  # type: ignore[attr-defined]
        finally:
            model.release()
            await asyncio.to_thread(b.close)
        assert model.batches == [[100], [0, 10, 20]]
        assert calls == 2  # one per batch, not one per job
        return [g for g in got if isinstance(g, np.ndarray)]

    outs = asyncio.run(run())
    assert [float(o[0, 0]) for o in outs] == [200.0, 0.0, 20.0, 40.0]
