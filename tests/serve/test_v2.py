"""The Open Inference Protocol (v2) with NVIDIA's own tritonclient, over gRPC and HTTP, against
real servers: health, metadata, explicit and seeded infer, shared batches, every bad input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serve import images
from serve._proto.inference.v2 import grpc_service_pb2
from serve.client import GeneratorClient
from serve.server import GeneratorServer
from tests.helpers import NZ, reference, reference_latent, running
from tests.serve import triton
from tests.serve.triton_client import describe

pytestmark = triton.skip_without
PROTOCOLS = ["grpc", "http"]
INVALID = {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"}
EXHAUSTED = {"grpc": "StatusCode.RESOURCE_EXHAUSTED", "http": "503"}


def _url(server: GeneratorServer, protocol: str) -> str:
    return server.address if protocol == "grpc" else f"127.0.0.1:{server.http_port}"


@pytest.fixture(scope="module")
def v2_server(models: dict[str, Path]) -> Iterator[GeneratorServer]:
    with running(models["g32"], http_port=0, model_name="dcgan", max_batch_size=8,
                 max_images_per_request=64, max_queue_size=512) as s:
        yield s


def _waiting_generate(server: GeneratorServer, n: int, seed: int) -> tuple[threading.Thread,
                                                                            list[Any]]:
    """A Generate of n images in a thread (it waits in the queue for its batch to fill)."""
    got: list[Any] = []

    def call() -> None:
        with GeneratorClient(server.address) as client:
            got.append(client.generate(n, seed=seed, format="raw_float32"))

    thread = threading.Thread(target=call)
    thread.start()
    return thread, got


def _batches(server: GeneratorServer) -> tuple[float, float]:
    """(inference calls, images computed) so far."""
    m = server.metrics
    return (m.value("gan_serve_batch_size_images_count"),
            m.value("gan_serve_batch_size_images_sum"))


def _wait_queued(server: GeneratorServer, images_: int) -> None:
    deadline = time.monotonic() + 60
    while server.metrics.value("gan_serve_queue_depth_images") < images_:
        assert time.monotonic() < deadline, "the request never queued"
        time.sleep(0.02)


def test_our_proto_is_tritonclients_on_the_wire() -> None:
    [theirs] = triton.run("grpc", "127.0.0.1:1", "m", [{"op": "descriptor"}])
    ours = describe(grpc_service_pb2)
    assert ours["service"] == theirs["service"] == "inference.GRPCInferenceService"
    assert set(ours["messages"]) <= set(theirs["messages"])
    for name, fields in ours["messages"].items():
        assert fields == theirs["messages"][name], name  # names, numbers, types, nesting
    for method, types in ours["methods"].items():
        assert types == theirs["methods"][method], method
    assert set(ours["methods"]) == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
                                    "ModelMetadata", "ModelInfer"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_and_metadata(v2_server: GeneratorServer, protocol: str) -> None:
    steps = [{"op": "live"}, {"op": "ready"}, {"op": "model_ready"},
             {"op": "model_ready", "model": "nope"}, {"op": "server_metadata"},
             {"op": "metadata"}, {"op": "metadata", "model": "nope"}]
    live, ready, model_ready, unknown_ready, server, meta, unknown = triton.run(
        protocol, _url(v2_server, protocol), "dcgan", steps)
    assert live is True and ready is True and model_ready is True
    assert server["name"] == "dcgan-forge" and "seeded_generation" in server["extensions"]
    assert meta["name"] == "dcgan" and meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    tensors = [(t["name"], t["datatype"], [int(d) for d in t["shape"]])  # gRPC JSON: "-1"
               for t in meta["inputs"] + meta["outputs"]]
    assert tensors == [("z", "FP32", [-1, NZ]), ("images", "FP32", [-1, 1, 32, 32])]
    status = {"grpc": "StatusCode.NOT_FOUND", "http": "404"}[protocol]
    assert triton.error(unknown) == (status, "unknown model 'nope': this server serves 'dcgan' "
                                             "version 1")
    if protocol == "http":
        assert unknown_ready is False  # tritonclient.http reads any non-200 as not ready
    else:
        assert triton.error(unknown_ready)[0] == status


@pytest.mark.parametrize("mode", ["grpc", "http-binary", "http-json"])
def test_infer_with_explicit_z_is_onnx_runtimes_output(v2_server: GeneratorServer,
                                                       models: dict[str, Path], tmp_path: Path,
                                                       mode: str) -> None:
    protocol = mode.split("-")[0]
    z = np.random.default_rng(3).standard_normal((11, NZ), dtype=np.float32)  # > 1 batch of 8
    [got] = triton.run(protocol, _url(v2_server, protocol), "dcgan", [triton.infer(
        tmp_path, {"z": ("FP32", z)}, outputs=["images"], binary=mode != "http-json")])
    assert got["shape"] == [11, 1, 32, 32] and got["datatype"] == "FP32"
    assert got["output"].dtype == np.float32
    np.testing.assert_array_equal(got["output"], reference_latent(models["g32"], z))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_seeded_infer_is_generate_with_that_seed(v2_server: GeneratorServer,
                                                 models: dict[str, Path], tmp_path: Path,
                                                 protocol: str) -> None:
    seeded, drawn = triton.run(protocol, _url(v2_server, protocol), "dcgan", [
        triton.infer(tmp_path, parameters={"num_images": 4, "seed": 7}),
        triton.infer(tmp_path, parameters={"num_images": 2})])
    with GeneratorClient(v2_server.address) as client:
        generated = client.generate(4, seed=7, format="raw_float32").images
    np.testing.assert_array_equal(seeded["output"], reference(models["g32"], 7, 4))
    for a, b in zip(images.to_float(seeded["output"]), generated, strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(_param(seeded["parameters"]["seed"])) == 7
    seed = int(_param(drawn["parameters"]["seed"]))  # a random seed, returned
    np.testing.assert_array_equal(drawn["output"], reference(models["g32"], seed, 2))


def _param(value: Any) -> Any:
    """A response parameter: plain in HTTP JSON, {"uint64_param": "7"} in gRPC's JSON."""
    return next(iter(value.values())) if isinstance(value, dict) else value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_v2_and_generate_requests_share_one_batch(models: dict[str, Path], tmp_path: Path,
                                                  protocol: str) -> None:
    """The batch runs only when full (3 + 5 images) or after a minute: one batch, both right."""
    with running(models["g32"], http_port=0, max_batch_size=8, max_queue_delay_ms=60_000) as s:
        z = np.random.default_rng(5).standard_normal((5, NZ), dtype=np.float32)
        thread, generated = _waiting_generate(s, 3, seed=2)
        _wait_queued(s, 3)
        [got] = triton.run(protocol, _url(s, protocol), "g32", [
            triton.infer(tmp_path, {"z": ("FP32", z)})])
        thread.join(timeout=60)
        assert _batches(s) == (1, 8)
    np.testing.assert_array_equal(got["output"], reference_latent(models["g32"], z))
    for a, b in zip(generated[0].images, images.to_float(reference(models["g32"], 2, 3)),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def _bad_steps(folder: Path) -> list[tuple[dict[str, Any], str]]:
    """(infer step, message) for every bad request, on the conditional model (10 classes,
    at most 64 images a request)."""
    z2 = np.zeros((2, NZ), np.float32)
    nan = z2.copy()
    nan[1, 7] = np.nan

    def step(inputs: dict[str, tuple[str, np.ndarray]] | None = None, **options: Any) -> Any:
        return triton.infer(folder, inputs, **options)

    labels = {"z": ("FP32", z2)}
    return [
        (step({"x": ("FP32", z2)}), "unknown input 'x': this model takes z FP32 [-1, 100], "
                                    "labels INT64 [-1]"),
        (step({"z": ("FP64", z2.astype(np.float64))}), "input z has datatype 'FP64', "
                                                       "expected FP32"),
        (step({"z": ("FP32", np.zeros((2, NZ + 1), np.float32))}), "shape [2, 101], "
                                                                   "expected [n, 100]"),
        (step({"z": ("FP32", np.zeros(NZ, np.float32))}), "shape [100], expected [n, 100]"),
        (step({"z": ("FP32", nan)}), "NaN or Inf"),
        (step({"z": ("FP32", np.zeros((65, NZ), np.float32))}),
         "input z's rows must be between 1 and 64, got 65"),
        (step({**labels, "labels": ("INT64", np.array([0, 10]))}), "label 10 is out of range"),
        (step({**labels, "labels": ("INT64", np.array([-1, 0]))}), "label -1 is out of range"),
        (step({**labels, "labels": ("INT64", np.array([1, 2, 3]))}), "3 labels for 2 images"),
        (step({**labels, "labels": ("INT32", np.array([1, 2], np.int32))}),
         "input labels has datatype 'INT32', expected INT64"),
        (step({**labels, "labels": ("INT64", np.array([[1, 2]]))}), "input labels has shape"),
        (step(), "no input z"),
        (step(labels, parameters={"seed": 3}), "give input z or the parameters"),
        (step(parameters={"num_images": 0}), "num_images must be between 1 and 64, got 0"),
        (step(parameters={"num_images": 65}), "num_images must be between 1 and 64, got 65"),
        (step(parameters={"num_images": 2, "seed": -1}), "seed must be between 0 and 2^64 - 1"),
        (step(parameters={"num_images": "2"}), "parameter num_images must be an integer"),
        (step(labels, outputs=["pixels"]), "unknown output 'pixels'"),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_inputs_are_invalid_argument_and_disturb_no_batch(models: dict[str, Path],
                                                              tmp_path: Path,
                                                              protocol: str) -> None:
    """A Generate waits for its batch to fill while every bad request is refused; a good v2
    request then fills it: one batch, both right, and nothing ended INTERNAL."""
    bad = _bad_steps(tmp_path)
    z = np.random.default_rng(9).standard_normal((3, NZ), dtype=np.float32)
    with running(models["g32_cond"], http_port=0, max_batch_size=6, max_queue_delay_ms=60_000,
                 max_images_per_request=64) as s:
        thread, generated = _waiting_generate(s, 3, seed=4)
        _wait_queued(s, 3)
        results = triton.run(protocol, _url(s, protocol), "g32_cond", [step for step, _ in bad] + [
            triton.infer(tmp_path, {"z": ("FP32", z), "labels": ("INT64", np.array([8]))})])
        thread.join(timeout=60)
        assert _batches(s) == (1, 6)
        assert s.metrics.value("gan_serve_queue_depth_images") == 0
        method = "ModelInfer" if protocol == "grpc" else "http:ModelInfer"
        assert s.metrics.value("gan_serve_requests_total", method=method,
                               code="INVALID_ARGUMENT") == len(bad)
        assert s.metrics.value("gan_serve_requests_total", method=method, code="INTERNAL") == 0
    for (_, message), result in zip(bad, results, strict=False):
        status, got = triton.error(result)
        assert status == INVALID[protocol] and message in got, (message, got)
    cond = models["g32_cond"]
    np.testing.assert_array_equal(results[-1]["output"], reference_latent(cond, z, [8] * 3))
    want = images.to_float(reference(cond, 4, 3, [0, 1, 2]))  # no labels: classes in turn
    for a, b in zip(generated[0].images, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_labels_on_an_unconditional_model_are_invalid(v2_server: GeneratorServer,
                                                      tmp_path: Path, protocol: str) -> None:
    [result] = triton.run(protocol, _url(v2_server, protocol), "dcgan", [triton.infer(
        tmp_path, {"z": ("FP32", np.zeros((1, NZ), np.float32)),
                   "labels": ("INT64", np.array([0]))})])
    status, message = triton.error(result)
    assert status == INVALID[protocol] and "this model is unconditional" in message


def test_full_queue_is_resource_exhausted_over_grpc_and_http(models: dict[str, Path],
                                                             tmp_path: Path) -> None:
    with running(models["g32"], http_port=0, max_batch_size=16, max_queue_size=16,
                 max_images_per_request=16, max_queue_delay_ms=60_000) as s:
        thread, generated = _waiting_generate(s, 10, seed=1)
        _wait_queued(s, 10)
        step = triton.infer(tmp_path, parameters={"num_images": 8, "seed": 1})
        for protocol in PROTOCOLS:
            [result] = triton.run(protocol, _url(s, protocol), "g32", [step])
            status, message = triton.error(result)
            assert status == EXHAUSTED[protocol] and "queue full" in message
        with GeneratorClient(s.address) as client:  # 10 + 6 fill the batch: both run
            filler = client.generate(6, seed=2, format="raw_float32")
        thread.join(timeout=60)
    assert len(generated[0].images) == 10 and len(filler.images) == 6
