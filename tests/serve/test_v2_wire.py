"""The v2 APIs at the wire, without tritonclient: the REST contract the page relies on, typed
gRPC contents, and the malformed requests a client library would never send."""

from __future__ import annotations

import importlib.resources
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from serve import latent
from serve._proto.inference.v2 import grpc_service_pb2 as pb
from serve._proto.inference.v2 import grpc_service_pb2_grpc as pb_grpc
from serve.server import GeneratorServer
from tests.helpers import FASHION_MNIST_CLASSES, NZ, reference, reference_latent, running

Tensor = pb.ModelInferRequest.InferInputTensor


@pytest.fixture(scope="module")
def cond(models: dict[str, Path]) -> Iterator[GeneratorServer]:
    with running(models["g32_cond"], http_port=0, max_batch_size=4,
                 max_images_per_request=32) as s:
        yield s


def _http(server: GeneratorServer, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    """(status, headers (case-insensitive), body) of GET path, or POST when there is a body."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=body,
                                     headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _infer(server: GeneratorServer, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, _, body = _http(server, "/v2/models/g32_cond/infer", json.dumps(request).encode())
    return status, json.loads(body)


def test_model_metadata_carries_the_self_description(cond: GeneratorServer) -> None:
    status, _, body = _http(cond, "/v2/models/g32_cond")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "g32_cond"  # the file's stem by default
    assert [i["name"] for i in meta["inputs"]] == ["z", "labels"]
    p = meta["parameters"]
    assert all(isinstance(v, str) for v in p.values())
    assert json.loads(p["class_names"]) == list(FASHION_MNIST_CLASSES)
    assert (p["nz"], p["height"], p["channels"], p["conditional"]) == ("100", "32", "1", "true")
    assert p["dataset"] == "fashion-mnist" and p["step"] == "0"
    assert p["provider"] == cond.model.provider and p["model_id"] == cond.model.info.model_id


def test_the_pages_request_gets_generates_images(cond: GeneratorServer,
                                                 models: dict[str, Path]) -> None:
    """What the page sends: seed parameters, one label per image; flat row-major JSON back."""
    status, reply = _infer(cond, {"parameters": {"num_images": 3, "seed": 21}, "inputs": [
        {"name": "labels", "datatype": "INT64", "shape": [3], "data": [5, 7, 9]}]})
    assert status == 200 and reply["model_name"] == "g32_cond"
    assert reply["parameters"] == {"seed": 21}
    [out] = reply["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("images", "FP32", [3, 1, 32, 32])
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    np.testing.assert_array_equal(got, reference(models["g32_cond"], 21, 3, [5, 7, 9]))


def test_binary_tensor_data_both_ways(cond: GeneratorServer, models: dict[str, Path]) -> None:
    z = latent.from_seed(2, 2, NZ)
    header = json.dumps({"inputs": [
        {"name": "z", "datatype": "FP32", "shape": [2, NZ],
         "parameters": {"binary_data_size": z.nbytes}},
        {"name": "labels", "datatype": "INT64", "shape": [1], "data": [4]}],
        "outputs": [{"name": "images", "parameters": {"binary_data": True}}]}).encode()
    status, headers, body = _http(cond, "/v2/models/g32_cond/versions/1/infer",
                                  header + z.tobytes(),
                                  {"Inference-Header-Content-Length": str(len(header))})
    assert status == 200
    cut = int(headers["Inference-Header-Content-Length"])
    [out] = json.loads(body[:cut])["outputs"]
    assert out["parameters"]["binary_data_size"] == len(body) - cut == 2 * 32 * 32 * 4
    got = np.frombuffer(body[cut:], "<f4").reshape(out["shape"])
    np.testing.assert_array_equal(got, reference_latent(models["g32_cond"], z, [4, 4]))


@pytest.mark.parametrize(("request_", "status", "message"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"inputs": {"name": "z"}}', 400, "inputs must be a list"),
    (b'{"inputs": [{"name": "z", "datatype": "FP32"}]}', 400, "needs a name, a datatype"),
    (b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], "data": "x"}]}', 400,
     "data must be a JSON array"),
    (b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], "data": [1, 2]}]}', 400,
     "has 2 elements, expected 100"),
    (b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 2], "data": [[1], [2, 3]]}]}',
     400, "expected [n, 100]"),
    (b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], "data": '
     + json.dumps(["a"] * 100).encode() + b"}]}", 400, "must be FP32 numbers"),
    (b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], "data": '
     + json.dumps([0] * 99 + [float("nan")]).encode() + b"}]}", 400, "NaN or Inf"),
    (b'{"inputs": [], "parameters": {"num_images": true}}', 400, "must be an integer"),
    (b'{"inputs": [], "parameters": {"num_images": 1, "seed": 1e30}}', 400,
     "must be an integer"),
])
def test_malformed_json_requests_are_400(cond: GeneratorServer, request_: bytes, status: int,
                                         message: str) -> None:
    got, _, body = _http(cond, "/v2/models/g32_cond/infer", request_)
    assert got == status and message in json.loads(body)["error"]


def test_binary_framing_errors_are_400(cond: GeneratorServer) -> None:
    header = b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], ' \
             b'"parameters": {"binary_data_size": 400}}]}'
    cases = [(header + b"\0" * 399, len(header), "does not fit"),
             (header + b"\0" * 401, len(header), "1 bytes of binary data belong to no input"),
             (header, len(header) + 5, "exceeds the body"),
             (header + b"\0" * 400, len(header) + 1, "not valid JSON")]
    for body, cut, message in cases:
        status, _, reply = _http(cond, "/v2/models/g32_cond/infer", body,
                                 {"Inference-Header-Content-Length": str(cut)})
        assert status == 400 and message in json.loads(reply)["error"], message
    status, _, reply = _http(cond, "/v2/models/g32_cond/infer", b"{}",
                             {"Content-Encoding": "gzip"})
    assert status == 400 and "compressed" in json.loads(reply)["error"]


def test_unknown_models_and_versions_are_404(cond: GeneratorServer) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready",
                 "/v2/models/g32_cond/versions/2", "/v2/models/g32_cond/versions/2/ready"):
        status, _, body = _http(cond, path)
        assert status == 404 and "unknown model" in json.loads(body)["error"], path
    status, _, body = _http(cond, "/v2/models/other/infer", b"{}")
    assert status == 404 and "serves 'g32_cond' version 1" in json.loads(body)["error"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/g32_cond/ready",
                 "/v2/models/g32_cond/versions/1"):
        assert _http(cond, path)[0] == 200, path


def test_the_repository_index_names_the_model(cond: GeneratorServer) -> None:
    status, _, body = _http(cond, "/v2/repository/index", b"{}")
    assert status == 200
    assert json.loads(body) == [{"name": "g32_cond", "version": "1", "state": "READY"}]


def test_the_page_is_served_at_the_root_when_installed(cond: GeneratorServer) -> None:
    status, headers, body = _http(cond, "/")
    page = importlib.resources.files("serve").joinpath("static/index.html")
    if page.is_file():
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert body == page.read_bytes()
    else:
        assert status == 404 and "no page" in json.loads(body)["error"]


def _stub(server: GeneratorServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def test_typed_grpc_contents_equal_raw_ones(cond: GeneratorServer,
                                            models: dict[str, Path]) -> None:
    z = latent.from_seed(8, 3, NZ)
    typed = pb.ModelInferRequest(model_name="g32_cond", id="req-1", inputs=[
        Tensor(name="z", datatype="FP32", shape=[3, NZ],
               contents=pb.InferTensorContents(fp32_contents=z.ravel().tolist())),
        Tensor(name="labels", datatype="INT64", shape=[3],
               contents=pb.InferTensorContents(int64_contents=[1, 2, 3]))])
    for stub in _stub(cond):
        reply = stub.ModelInfer(typed, timeout=60)
    assert reply.id == "req-1" and reply.model_version == "1"
    assert list(reply.outputs[0].shape) == [3, 1, 32, 32]
    got = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(3, 1, 32, 32)
    np.testing.assert_array_equal(got, reference_latent(models["g32_cond"], z, [1, 2, 3]))


def test_malformed_grpc_requests_are_invalid_argument(cond: GeneratorServer) -> None:
    z = np.zeros((1, NZ), np.float32)
    zt = Tensor(name="z", datatype="FP32", shape=[1, NZ])
    cases = [
        (pb.ModelInferRequest(inputs=[zt], raw_input_contents=[z.tobytes(), b""]),
         "2 raw_input_contents for 1 inputs"),
        (pb.ModelInferRequest(inputs=[zt], raw_input_contents=[z.tobytes()[:-4]]),
         "has 396 bytes of data, expected 100 x 4"),
        (pb.ModelInferRequest(inputs=[Tensor(name="z", datatype="FP32", shape=[1, NZ],
                                             contents=pb.InferTensorContents(
                                                 fp32_contents=[0.0] * NZ))],
                              raw_input_contents=[z.tobytes()]), "one or the other"),
        (pb.ModelInferRequest(inputs=[zt]), "input z has no data"),
        (pb.ModelInferRequest(inputs=[zt, zt], raw_input_contents=[z.tobytes()] * 2),
         "input 'z' is given twice"),
        (pb.ModelInferRequest(inputs=[Tensor(name="z", datatype="FP32", shape=[-1, NZ])],
                              raw_input_contents=[z.tobytes()]), "must not be negative"),
    ]
    for stub in _stub(cond):
        for request, message in cases:
            request.model_name = "g32_cond"
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(request, timeout=60)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
            assert message in e.value.details(), message


def test_a_uint8_model_says_uint8_and_returns_its_pixels(models: dict[str, Path]) -> None:
    with running(models["g32_uint8"], model_name="pixels") as s:
        for stub in _stub(s):
            meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="pixels"), timeout=60)
            reply = stub.ModelInfer(pb.ModelInferRequest(model_name="pixels", parameters={
                "num_images": pb.InferParameter(int64_param=2),
                "seed": pb.InferParameter(uint64_param=2**64 - 1)}), timeout=60)
    assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == [
        ("images", "UINT8", [-1, 32, 32, 1])]
    assert reply.outputs[0].datatype == "UINT8" and reply.parameters["seed"].uint64_param == \
        2**64 - 1
    got = np.frombuffer(reply.raw_output_contents[0], np.uint8).reshape(2, 32, 32, 1)
    np.testing.assert_array_equal(got, reference(models["g32_uint8"], 2**64 - 1, 2))


def test_an_output_over_the_message_limit_is_refused_before_queueing(
        models: dict[str, Path]) -> None:
    with running(models["g64"], max_message_mb=1, max_images_per_request=64) as s:
        for stub in _stub(s):
            with pytest.raises(grpc.RpcError) as e:  # 22 x 48 KiB > 1 MiB
                stub.ModelInfer(pb.ModelInferRequest(model_name="g64", parameters={
                    "num_images": pb.InferParameter(int64_param=22)}), timeout=60)
        assert s.metrics.value("gan_serve_images_generated_total") == 0
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceed the 1048576-byte message limit" in e.value.details()
