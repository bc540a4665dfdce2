"""What the server refuses and drops: bad input, a full queue, expired and cancelled requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from serve._proto.gan.v1 import generator_pb2 as pb
from serve.client import GeneratorClient, request
from serve.server import GeneratorServer
from tests.helpers import running

NZ = 100


def _invalid_requests() -> dict[str, tuple[pb.GenerateRequest, str]]:
    def req(**fields: object) -> pb.GenerateRequest:
        return pb.GenerateRequest(**fields)  # type: ignore[arg-type]

    nan = [0.0] * (2 * NZ - 1) + [float("nan")]
    return {
        "zero images": (req(num_images=0, seed=1), "num_images must be between 1 and 64"),
        "too many images": (req(num_images=65, seed=1), "num_images must be between 1 and 64"),
        "short latent": (req(num_images=2, latent=[0.0] * (2 * NZ - 1)), "has 199 values"),
        "long latent": (req(num_images=1, latent=[0.0] * (NZ + 1)), "has 101 values"),
        "nan latent": (req(num_images=2, latent=nan), "NaN or Inf"),
        "inf latent": (req(num_images=1, latent=[float("inf")] + [0.0] * (NZ - 1)), "NaN or Inf"),
        "seed and latent": (req(num_images=1, seed=1, latent=[0.0] * NZ), "not both"),
        "unknown format": (req(num_images=1, seed=1, format=7), "unknown image format 7"),
        "labels on unconditional": (req(num_images=2, seed=1, labels=[0, 1]), "unconditional"),
        "one label on unconditional": (req(num_images=2, seed=1, labels=[3]), "unconditional"),
    }


@pytest.mark.parametrize("name", list(_invalid_requests()))
def test_invalid_input_is_invalid_argument(server: GeneratorServer, name: str) -> None:
    bad, message = _invalid_requests()[name]
    with GeneratorClient(server.address) as client:
        for call in (client.stub.Generate, lambda r, timeout: list(
                client.stub.GenerateStream(r, timeout=timeout))):
            with pytest.raises(grpc.RpcError) as e:
                call(bad, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
            assert message in e.value.details()


def test_bad_requests_do_not_disturb_good_ones_in_the_same_batch(models: dict[str, Path]) -> None:
    """Good requests wait 300 ms for a batch to fill while bad ones arrive: all good succeed."""
    with running(models["g32"], max_batch_size=64, max_queue_delay_ms=300,
                 max_images_per_request=64) as s, \
            GeneratorClient(s.address) as client:
        solo = client.generate(3, seed=8, format="raw_float32").data
        results: list[object] = []
        good = [threading.Thread(target=lambda: results.append(
            client.generate(3, seed=8, format="raw_float32").data)) for _ in range(4)]
        for th in good:
            th.start()
        for bad, _message in _invalid_requests().values():
            with pytest.raises(grpc.RpcError) as e:
                client.stub.Generate(bad, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for th in good:
            th.join(timeout=30)
        assert results == [solo] * 4
        assert s.metrics.value("gan_serve_requests_total", method="Generate",
                               code="INTERNAL") == 0


def test_unary_response_over_the_message_limit_points_to_the_stream(
        models: dict[str, Path]) -> None:
    with running(models["g64"], max_message_mb=1, max_images_per_request=256) as s, \
            GeneratorClient(s.address) as client:
        with pytest.raises(grpc.RpcError) as e:
            client.generate(40, seed=1, format="raw_float32")  # 40 x 48 KiB > 1 MiB
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "GenerateStream" in e.value.details()
        parts = list(client.generate_stream(40, seed=1, format="raw_float32"))
        assert sum(len(p.images) for p in parts) == 40 and len(parts) == 2  # 21 per 1 MiB
        assert [p.first_index for p in parts] == sorted({p.first_index for p in parts})


def test_full_queue_is_resource_exhausted_and_the_server_keeps_serving(
        models: dict[str, Path]) -> None:
    """Queue of 16 images; a 10-image request waits (delay 1.5 s, batch not full); another 10
    cannot fit: RESOURCE_EXHAUSTED at once; the first then completes and new requests work."""
    with running(models["g32"], max_batch_size=16, max_queue_size=16,
                 max_images_per_request=16, max_queue_delay_ms=1500) as s, \
            GeneratorClient(s.address) as client:
        waiting = client.stub.Generate.future(request(10, seed=1), timeout=30)
        deadline = time.monotonic() + 10
        while s.metrics.value("gan_serve_queue_depth_images") < 10:
            assert time.monotonic() < deadline, "first request never queued"
            time.sleep(0.01)
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            client.generate(10, seed=2)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue full" in e.value.details()
        assert time.monotonic() - began < 1.0, "refusal was not immediate"
        assert len(waiting.result().images) == 10
        assert len(client.generate(6, seed=3).images) == 6


def test_expired_deadline_is_dropped_before_compute(models: dict[str, Path]) -> None:
    """A request whose deadline passes while it waits for a batch is dropped: no images computed
    for it (gan_serve_images_generated stays 0) and the drop is counted."""
    with running(models["g32"], max_batch_size=64, max_queue_delay_ms=3000) as s, \
            GeneratorClient(s.address) as client:
        client.model_info()  # connect first: the deadline must run out in the queue, not before
        with pytest.raises(grpc.RpcError) as e:
            client.generate(5, seed=1, timeout_s=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(3.2)  # past the batch delay: the worker would have run it by now
        m = s.metrics
        assert m.value("gan_serve_images_dropped_total", reason="deadline") == 5
        assert m.value("gan_serve_images_generated_total") == 0
        assert m.value("gan_serve_queue_depth_images") == 0
        assert m.value("gan_serve_batch_size_images_count") == 0


def test_cancelled_request_is_dropped_before_compute(models: dict[str, Path]) -> None:
    with running(models["g32"], max_batch_size=64, max_queue_delay_ms=1000) as s, \
            GeneratorClient(s.address) as client:
        call = client.stub.Generate.future(request(7, seed=1), timeout=30)
        deadline = time.monotonic() + 10
        while s.metrics.value("gan_serve_queue_depth_images") < 7:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert call.cancel()
        deadline = time.monotonic() + 10
        while s.metrics.value("gan_serve_images_dropped_total", reason="cancelled") < 7:
            assert time.monotonic() < deadline, "cancelled request was not dropped"
            time.sleep(0.01)
        time.sleep(1.1)
        assert s.metrics.value("gan_serve_images_generated_total") == 0
        assert s.metrics.value("gan_serve_queue_depth_images") == 0
        good = client.generate(2, seed=1, format="raw_float32")  # still serving
        assert len(good.images) == 2 and np.isfinite(good.images[0]).all()


def test_a_job_cancelled_before_it_is_queued_is_answered_not_stranded(
        models: dict[str, Path]) -> None:
    """The RPC's end can race with submit: the handler must get Dropped, never wait forever."""
    from serve.batcher import Batcher, Dropped, Job
    from serve.metrics import Metrics
    from serve.model import ServedModel

    metrics = Metrics(8)
    model = ServedModel(models["g32"], providers="cpu")
    batcher = Batcher(model.run, metrics=metrics, max_batch=8, max_delay_s=0.0, max_queue=64)
    try:
        job = Job(z=np.zeros((3, NZ), np.float32))
        batcher.discard(job)  # the gRPC callback fired first
        batcher.submit(job)
        item = job.parts.get(timeout=5)
        assert isinstance(item, Dropped) and item.reason == "cancelled"
        assert metrics.value("gan_serve_images_dropped_total", reason="cancelled") == 3
        assert metrics.value("gan_serve_images_generated_total") == 0
        ok = Job(z=np.zeros((3, NZ), np.float32))
        batcher.submit(ok)
        assert job.parts.empty() and ok.parts.get(timeout=10).shape == (3, 1, 32, 32)
        late = Job(z=np.zeros((2, NZ), np.float32))
        batcher.discard(late, "deadline")  # the deadline ran out before the handler queued it
        batcher.submit(late)
        item = late.parts.get(timeout=5)
        assert isinstance(item, Dropped) and item.reason == "deadline"
        assert metrics.value("gan_serve_images_dropped_total", reason="deadline") == 2
    finally:
        batcher.close()
