"""Generate / GenerateStream / GetModelInfo on a real server: right images, whatever the batch."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from serve import images, latent
from serve.client import GeneratorClient
from serve.server import GeneratorServer
from tests.helpers import reference, running


def _float_images(raw: np.ndarray) -> list[np.ndarray]:
    return list(images.to_float(raw))  # (B, C, H, W) -> B x (H, W, C)


def test_images_are_the_models_output_for_the_seed(server: GeneratorServer,
                                                   models: dict[str, Path]) -> None:
    want = reference(models["g32"], seed=11, n=5)  # batch-1 calls, in this process
    with GeneratorClient(server.address) as client:
        got = client.generate(5, seed=11, format="raw_float32")
        u8 = client.generate(5, seed=11, format="raw_uint8")
        png = client.generate(5, seed=11)  # PNG by default
    assert got.seed == 11 and got.model_id == server.model.info.model_id
    assert got.model_id.startswith("sha256:") and len(got.model_id) == 7 + 16
    for a, b in zip(got.images, _float_images(want), strict=True):
        np.testing.assert_array_equal(a, b)  # bit-exact: see the determinism note
    pixels = list(images.to_uint8(want))
    for a, b, c in zip(u8.images, png.images, pixels, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
        assert a.shape == (32, 32, 1) and a.dtype == np.uint8
    assert png.data[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_server_picks_and_returns_a_seed_that_reproduces(server: GeneratorServer) -> None:
    with GeneratorClient(server.address) as client:
        first = client.generate(2, format="raw_float32")
        assert first.seed is not None
        again = client.generate(2, seed=first.seed, format="raw_float32")
        other = client.generate(2, format="raw_float32")
    assert other.seed != first.seed
    for a, b in zip(first.images, again.images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_explicit_latent_gives_the_same_images_as_its_seed(server: GeneratorServer) -> None:
    z = latent.from_seed(5, 3, 100)
    with GeneratorClient(server.address) as client:
        by_latent = client.generate(3, latent=z, format="raw_float32")
        by_seed = client.generate(3, seed=5, format="raw_float32")
    assert by_latent.seed is None
    for a, b in zip(by_latent.images, by_seed.images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_concurrent_clients_each_get_exactly_their_own_images(server: GeneratorServer) -> None:
    """40 threads, requests of 1-5 images (so batches mix requests and split some), compared
    with the same requests made alone, one at a time."""
    threads, per_thread = 40, 3
    jobs = [(1000 + t * 10 + k, 1 + (t + k) % 5) for t in range(threads)
            for k in range(per_thread)]
    solo = {}
    with GeneratorClient(server.address) as client:
        for seed, n in jobs:
            solo[seed] = client.generate(n, seed=seed, format="raw_float32").data
    batches_before = server.metrics.value("gan_serve_batch_size_images_count")
    got: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            with GeneratorClient(server.address) as client:
                start.wait()
                for seed, n in jobs[t * per_thread:(t + 1) * per_thread]:
                    got[seed] = client.generate(n, seed=seed, format="raw_float32").data
        except BaseException as e:  # surfaced below, with the thread's failure
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=60)
    assert not errors, errors[:3]
    assert got.keys() == solo.keys()
    for seed in solo:
        assert got[seed] == solo[seed], f"seed {seed}: images differ from the solo request"
    batches = server.metrics.value("gan_serve_batch_size_images_count") - batches_before
    assert batches < len(jobs), "no request was batched with another"


def test_large_request_is_split_across_batches_and_reassembled(server: GeneratorServer,
                                                               models: dict[str, Path]) -> None:
    m = server.metrics
    before = (m.value("gan_serve_batch_size_images_count"),
              m.value("gan_serve_images_generated_total"))
    with GeneratorClient(server.address) as client:
        whole = client.generate(21, seed=3, format="raw_float32")  # max batch 8: 8 + 8 + 5
        parts = list(client.generate_stream(21, seed=3, format="raw_float32"))
    assert m.value("gan_serve_batch_size_images_count") - before[0] >= 6
    assert m.value("gan_serve_images_generated_total") - before[1] == 42
    want = _float_images(reference(models["g32"], seed=3, n=21))
    for a, b in zip(whole.images, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.first_index for p in parts] == [0, 8, 16]
    assert all(p.seed == 3 for p in parts)
    streamed = [im for p in parts for im in p.images]
    for a, b in zip(streamed, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rgb_64px_model_and_uint8_model(models: dict[str, Path]) -> None:
    with running(models["g64"]) as s, GeneratorClient(s.address) as client:
        info = client.model_info()
        got = client.generate(2, seed=1)
        assert (info.height, info.width, info.channels) == (64, 64, 3)
        assert got.images[0].shape == (64, 64, 3)
    with running(models["g32"]) as a, running(models["g32_uint8"]) as b, \
            GeneratorClient(a.address) as ca, GeneratorClient(b.address) as cb:
        fa, fb = ca.generate(3, seed=9, format="raw_uint8"), cb.generate(3, seed=9,
                                                                          format="raw_uint8")
        assert fa.data == fb.data and fa.model_id != fb.model_id
        f32 = cb.generate(1, seed=9, format="raw_float32").images[0]
        np.testing.assert_array_equal(f32, fb.images[0].astype(np.float32) / 127.5 - 1)


def test_model_info(server: GeneratorServer) -> None:
    with GeneratorClient(server.address) as client:
        info = client.model_info()
    assert info.nz == 100 and (info.height, info.width, info.channels) == (32, 32, 1)
    assert info.max_batch_size == 8 and info.max_images_per_request == 64
    assert info.provider == "cpu" and list(info.class_names) == []
    assert info.dataset == "fashion-mnist" and info.metadata["format"] == "dcgan-forge/generator"
    assert info.model_id == server.model.info.model_id


def test_prometheus_endpoint(server: GeneratorServer) -> None:
    with GeneratorClient(server.address) as client:
        client.generate(1, seed=0)
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for name in ("gan_serve_requests_total{code=\"OK\",method=\"Generate\"}",
                 "gan_serve_request_seconds_bucket", "gan_serve_queue_wait_seconds_bucket",
                 "gan_serve_batch_size_images_bucket", "gan_serve_images_generated_total",
                 "gan_serve_queue_depth_images"):
        assert name in text, name


def test_reflection_lists_the_services(server: GeneratorServer) -> None:
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for r in replies for s in r.list_services_response.service}
        assert {"gan.v1.Generator", "grpc.health.v1.Health"} <= names
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="gan.v1.Generator")]), timeout=10)
        files = [r.file_descriptor_response.file_descriptor_proto for r in replies]
        assert files and files[0]


@pytest.mark.parametrize("fmt", ["png", "raw_uint8", "raw_float32"])
def test_every_format_decodes_to_the_same_picture(server: GeneratorServer, fmt: str) -> None:
    with GeneratorClient(server.address) as client:
        got = client.generate(2, seed=4, format=fmt).images
        u8 = client.generate(2, seed=4, format="raw_uint8").images
    for a, b in zip(got, u8, strict=True):
        if fmt == "raw_float32":
            a = images.to_uint8(a.transpose(2, 0, 1)[None])[0]
        np.testing.assert_array_equal(a, b)
