"""Conditional models on a real server: labels checked, applied per image, batched correctly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from serve import images, labels, latent
from serve._proto.gan.v1 import generator_pb2 as pb
from serve.client import GeneratorClient
from serve.server import GeneratorServer
from tests.helpers import FASHION_MNIST_CLASSES, NZ, reference, reference_latent, running


@pytest.fixture(scope="module")
def cond(models: dict[str, Path]) -> Iterator[GeneratorServer]:
    """The conditional model with small batches (max 4), so requests split and mix."""
    with running(models["g32_cond"], max_batch_size=4, max_queue_delay_ms=2.0,
                 max_images_per_request=64) as s:
        yield s


def _floats(raw: np.ndarray) -> list[np.ndarray]:
    return list(images.to_float(raw))  # (B, C, H, W) -> B x (H, W, C)


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)  # bit-exact on CPU (docs/serving.md: Determinism)


@pytest.mark.parametrize("values, n, message", [
    ([10], 2, "label 10 is out of range: this model has 10 classes (class_names), so labels "
              "must be between 0 and 9"),
    ([-1], 1, "label -1 is out of range"),
    ([0, 1, 99], 3, "label 99 is out of range"),
    ([0, 1], 3, "2 labels for 3 images: give one label per image (3) or one for all (1)"),
    ([0, 1, 2, 3], 3, "4 labels for 3 images"),
])
def test_bad_labels_are_invalid_argument(cond: GeneratorServer, values: list[int], n: int,
                                         message: str) -> None:
    bad = pb.GenerateRequest(num_images=n, seed=1, labels=values)
    with GeneratorClient(cond.address) as client:
        for call in (client.stub.Generate, lambda r, timeout: list(
                client.stub.GenerateStream(r, timeout=timeout))):
            with pytest.raises(grpc.RpcError) as e:
                call(bad, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in e.value.details()
    assert cond.metrics.value("gan_serve_requests_total", method="Generate", code="INTERNAL") == 0


def test_images_are_the_models_output_for_seed_and_labels(cond: GeneratorServer,
                                                          models: dict[str, Path]) -> None:
    chosen = [7, 0, 9, 3, 3, 1]  # 6 images: split 4 + 2 by the server
    want = _floats(reference(models["g32_cond"], seed=21, n=6, labels=chosen))
    with GeneratorClient(cond.address) as client:
        got = client.generate(6, seed=21, labels=chosen, format="raw_float32")
        streamed = list(client.generate_stream(6, seed=21, labels=chosen, format="raw_float32"))
    _same(got.images, want)
    _same([im for part in streamed for im in part.images], want)


def test_labels_change_the_images(cond: GeneratorServer) -> None:
    """Same latent, every class: ten different images (so the tests below can tell labels
    apart, and a server that ignored labels would fail them)."""
    z = np.repeat(latent.from_seed(2, 1, NZ), 10, axis=0)  # (10, nz), one latent
    with GeneratorClient(cond.address) as client:
        got = client.generate(10, latent=z, labels=list(range(10)), format="raw_float32")
    assert len({im.tobytes() for im in got.images}) == 10


def test_one_label_for_all_equals_that_label_per_image(cond: GeneratorServer) -> None:
    with GeneratorClient(cond.address) as client:
        one = client.generate(5, seed=4, labels=[7], format="raw_float32")
        each = client.generate(5, seed=4, labels=[7] * 5, format="raw_float32")
        scalar = client.generate(5, seed=4, labels=7, format="raw_float32")
        other = client.generate(5, seed=4, labels=[8], format="raw_float32")
    assert one.data == each.data == scalar.data
    assert one.data != other.data


def test_no_labels_cycle_through_the_classes(cond: GeneratorServer,
                                             models: dict[str, Path]) -> None:
    n = 23  # more than two rounds of 10 classes, split 4 + 4 + ... by the server
    want = _floats(reference(models["g32_cond"], seed=6, n=n, labels=[i % 10 for i in range(n)]))
    with GeneratorClient(cond.address) as client:
        got = client.generate(n, seed=6, format="raw_float32")
        explicit = client.generate(n, seed=6, labels=[i % 10 for i in range(n)],
                                   format="raw_float32")
    _same(got.images, want)
    assert got.data == explicit.data


def test_explicit_latent_with_labels(cond: GeneratorServer, models: dict[str, Path]) -> None:
    z = latent.from_seed(3, 5, NZ) * np.float32(0.5)  # (5, nz), no seed's latent
    want = _floats(reference_latent(models["g32_cond"], z, [8] * 5))
    with GeneratorClient(cond.address) as client:
        got = client.generate(5, latent=z, labels=[8], format="raw_float32")
    _same(got.images, want)


def test_concurrent_requests_with_different_labels_each_get_their_own(
        cond: GeneratorServer) -> None:
    """24 threads, 1-5 images each, each with its own labels (one for all, per image, or none):
    batches of at most 4 mix requests and split some; each result equals the same request made
    alone."""
    threads = 24
    jobs = []
    for t in range(threads):
        n = 1 + t % 5
        chosen = [t % 10] if t % 3 == 0 else [] if t % 3 == 1 else [(t + i) % 10 for i in range(n)]
        jobs.append((500 + t, n, chosen))
    with GeneratorClient(cond.address) as client:
        solo = {seed: client.generate(n, seed=seed, labels=chosen, format="raw_float32").data
                for seed, n, chosen in jobs}
    batches_before = cond.metrics.value("gan_serve_batch_size_images_count")
    got: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(seed: int, n: int, chosen: list[int]) -> None:
        try:
            with GeneratorClient(cond.address) as client:
                start.wait()
                got[seed] = client.generate(n, seed=seed, labels=chosen,
                                            format="raw_float32").data
        except BaseException as e:  # surfaced below
            errors.append(e)

    pool = [threading.Thread(target=worker, args=job) for job in jobs]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=60)
    assert not errors, errors[:3]
    for seed, _n, chosen in jobs:
        assert got[seed] == solo[seed], f"seed {seed}, labels {chosen}: differs from solo"
    batches = cond.metrics.value("gan_serve_batch_size_images_count") - batches_before
    assert batches < len(jobs), "no request was batched with another"


def test_model_info_lists_the_class_names(cond: GeneratorServer) -> None:
    with GeneratorClient(cond.address) as client:
        info = client.model_info()
    assert list(info.class_names) == list(FASHION_MNIST_CLASSES)
    assert info.metadata["conditional"] == "true"


def test_batcher_keeps_each_parts_labels(models: dict[str, Path]) -> None:
    """Job a (2 images) waits for a batch of 3 to fill; job b (3 images) fills it and is split
    (a0 a1 b0 | b1 b2): each part's labels go with its latents, through batcher and model."""
    from serve.batcher import Batcher, Job
    from serve.metrics import Metrics
    from serve.model import ServedModel

    def collect(job: Job) -> np.ndarray:
        parts = []
        while sum(len(p) for p in parts) < job.size:
            parts.append(job.parts.get(timeout=10))
        return np.concatenate(parts)

    model = ServedModel(models["g32_cond"], providers="cpu")
    batcher = Batcher(model.run, metrics=Metrics(3), max_batch=3, max_delay_s=0.5, max_queue=64)
    try:
        za, zb = latent.from_seed(1, 2, NZ), latent.from_seed(2, 3, NZ)
        la, lb = np.array([1, 2], np.int64), np.array([9, 8, 7], np.int64)
        a, b = Job(z=za, labels=la), Job(z=zb, labels=lb)
        batcher.submit(a)
        batcher.submit(b)
        got_a, got_b = collect(a), collect(b)
    finally:
        batcher.close()
    np.testing.assert_array_equal(got_a, np.concatenate(
        [model.run(za[i:i + 1], la[i:i + 1]) for i in range(2)]))
    np.testing.assert_array_equal(got_b, np.concatenate(
        [model.run(zb[i:i + 1], lb[i:i + 1]) for i in range(3)]))


def test_label_rule() -> None:
    names = ["a", "b", "c"]
    assert labels.for_request([], 7, names).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert labels.for_request([2], 3, names).tolist() == [2, 2, 2]
    assert labels.for_request([2, 0, 1], 3, names).tolist() == [2, 0, 1]
    assert labels.for_request([], 3, []) is None
    with pytest.raises(labels.LabelError, match="unconditional"):
        labels.for_request([0], 3, [])
    with pytest.raises(labels.LabelError, match="between 0 and 2"):
        labels.for_request([3], 1, names)


def test_label_names_and_indices() -> None:
    names = list(FASHION_MNIST_CLASSES)
    assert labels.parse("Sneaker", names) == 7
    assert labels.parse("sNEAKER", names) == 7
    assert labels.parse("ankle boot", names) == 9
    assert labels.parse("7", names) == 7 and labels.parse("0", names) == 0
    with pytest.raises(labels.LabelError, match="no such class; give an index .* Ankle boot"):
        labels.parse("Sneakers", names)
    for bad in ("10", "-1"):
        with pytest.raises(labels.LabelError, match="out of range, this model has 10 classes"):
            labels.parse(bad, names)
    with pytest.raises(labels.LabelError, match="unconditional"):
        labels.parse("Sneaker", [])
    # a name wins over an index, and exact case over folded case
    assert labels.parse("1", ["x", "y", "1"]) == 2
    assert labels.parse("A", ["a", "A"]) == 1 and labels.parse("a", ["a", "A"]) == 0


def test_bad_labels_do_not_disturb_good_requests_in_the_same_batch(
        models: dict[str, Path]) -> None:
    """Good labelled requests wait 300 ms for a batch to fill while bad-label requests arrive:
    every good one gets exactly its solo images, and nothing ends in INTERNAL."""
    with running(models["g32_cond"], max_batch_size=64, max_queue_delay_ms=300) as s, \
            GeneratorClient(s.address) as client:
        goods = [(3, [5]), (2, [0, 9]), (4, [])]
        solo = [client.generate(n, seed=8, labels=ls, format="raw_float32").data
                for n, ls in goods]
        results: dict[int, list[bytes]] = {}

        def ask(i: int) -> None:
            n, ls = goods[i]
            results[i] = client.generate(n, seed=8, labels=ls, format="raw_float32").data

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(goods))]
        for th in threads:
            th.start()
        for values, n in (([10], 2), ([-3], 1), ([1, 2], 3)):
            with pytest.raises(grpc.RpcError) as e:
                client.generate(n, seed=8, labels=values)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for th in threads:
            th.join(timeout=30)
        assert [results[i] for i in range(len(goods))] == solo
        assert s.metrics.value("gan_serve_requests_total", method="Generate",
                               code="INTERNAL") == 0
