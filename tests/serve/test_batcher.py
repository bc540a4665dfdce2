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
