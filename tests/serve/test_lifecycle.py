"""Start-up and shutdown: health, draining, and models that cannot be served."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan.contract import ModelLoadError
from gan.model import read_info
from serve.client import GeneratorClient, request
from tests.helpers import running

ROOT = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_health_serving_then_not_serving_while_in_flight_requests_finish(
        models: dict[str, Path]) -> None:
    with running(models["g32"], max_batch_size=64, max_queue_delay_ms=5000) as s, \
            GeneratorClient(s.address) as client:
        health = health_pb2_grpc.HealthStub(client.channel)
        for service in ("", "gan.v1.Generator"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service="gan.v1.Generator"))
        seen: list[int] = []

        def follow() -> None:
            try:
                for reply in watch:
                    seen.append(reply.status)
            except grpc.RpcError as e:  # ends when the test cancels it
                assert e.code() == grpc.StatusCode.CANCELLED

        watcher = threading.Thread(target=follow)
        watcher.start()
        in_flight = [client.stub.Generate.future(request(4, seed=i), timeout=30)
                     for i in range(3)]
        _wait_for(lambda: s.metrics.value("gan_serve_queue_depth_images") == 12, "queueing")
        stopper = threading.Thread(target=s.stop, kwargs={"grace_s": 20.0})
        began = time.monotonic()
        stopper.start()
        _wait_for(lambda: NOT_SERVING in seen, "NOT_SERVING")
        watch.cancel()  # a watch is an RPC too: it would hold the drain for the whole grace
        for call in in_flight:
            assert len(call.result(timeout=20).images) == 4
        stopper.join(timeout=20)
        assert not stopper.is_alive()
        assert time.monotonic() - began < 5, "draining waited for the batch delay"
        assert seen[0] == SERVING and seen[-1] == NOT_SERVING
        with pytest.raises(grpc.RpcError) as e:
            client.generate(1, seed=1, timeout_s=2)
        assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _onnx_identity(path: Path, meta: dict[str, str] | None = None) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["z"], ["images"])], "g",
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 100])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                             ["b", 100])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)
    return path


def _onnx_conditional(path: Path, meta: dict[str, str], rows: int = 2,
                      labels_type: int = 7) -> Path:
    """z [b, 100] + table[labels] -> images [b, 1, 10, 10]: the conditional contract's shape,
    with a label table of `rows` classes (labels_type 7 is TensorProto.INT64)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((rows, 100), np.float32), "table")
    shape = numpy_helper.from_array(np.array([-1, 1, 10, 10], np.int64), "shape")
    nodes = [helper.make_node("Cast", ["labels"], ["index"], to=TensorProto.INT64),
             helper.make_node("Gather", ["table", "index"], ["e"]),
             helper.make_node("Add", ["z", "e"], ["h"]),
             helper.make_node("Reshape", ["h", "shape"], ["images"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 100]),
                     helper.make_tensor_value_info("labels", labels_type, ["b"])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 1, 10, 10])],
        [table, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, path)
    return path


def _bad_models(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf\x00\xff" * 10)
    meta = {"format": "dcgan-forge/generator", "format_version": "1", "nz": "100",
            "height": "32", "width": "32", "channels": "1", "output": "float"}
    return {
        "missing": (tmp / "nope.onnx", "does not exist"),
        "folder": (tmp, "does not exist"),
        "not onnx": (garbage, "is not a loadable ONNX model"),
        "not a generator": (_onnx_identity(tmp / "other.onnx"), "not a dcgan-forge generator"),
        "newer format": (_onnx_identity(tmp / "v9.onnx", meta | {"format_version": "9"}),
                         "format version '9'"),
        "graph disagrees": (_onnx_identity(tmp / "shape.onnx", meta),
                            "expected a 4-d tensor(float)"),
        "class names, no labels input": (
            _onnx_identity(tmp / "names.onnx", meta | {"class_names": '["a"]'}),
            "has inputs ['z'], but its metadata says it is conditional (1 class names)"),
        "labels input, no class names": (
            _onnx_conditional(tmp / "nameless.onnx", meta),
            "but its metadata says it is unconditional (no class names)"),
        "float labels": (
            _onnx_conditional(tmp / "float.onnx", meta | {"class_names": '["a", "b"]'},
                              labels_type=1),
            "input labels is tensor(float) ['b'], expected int64 [batch]"),
        "more names than classes": (
            _onnx_conditional(tmp / "short.onnx", meta | {"class_names": '["a", "b", "c"]'}),
            "names 3 classes but fails on label 2"),
        "conditional flag disagrees": (
            _onnx_conditional(tmp / "flag.onnx", meta | {"class_names": '["a", "b"]',
                                                         "conditional": "false"}),
            "says conditional='false' but has 2 class names"),
        "duplicate class names": (
            _onnx_conditional(tmp / "dup.onnx", meta | {"class_names": '["a", "a"]'}),
            "class_names has duplicates"),
        "class names not a list": (
            _onnx_conditional(tmp / "str.onnx", meta | {"class_names": '"ab"'}),
            "class_names must be a JSON list of non-empty strings"),
    }


def test_models_that_cannot_be_served_give_one_clear_error(tmp_path: Path,
                                                           models: dict[str, Path]) -> None:
    for name, (path, message) in _bad_models(tmp_path, models["g32"]).items():
        with pytest.raises(ModelLoadError, match=re.escape(message)):
            read_info(path)
        assert name
    info = read_info(models["g32"])
    assert (info.nz, info.output, info.class_names) == (100, "float", [])
    assert json.loads(info.metadata["train_config"])["ngf"] == 8
    assert not info.conditional


def test_conditional_models_load(tmp_path: Path, models: dict[str, Path]) -> None:
    info = read_info(models["g32_cond"])
    assert info.conditional and info.metadata["conditional"] == "true"
    assert info.class_names[7] == "Sneaker" and len(info.class_names) == 10
    meta = {"format": "dcgan-forge/generator", "format_version": "1", "nz": "100",
            "height": "10", "width": "10", "channels": "1", "output": "float",
            "class_names": '["a", "b"]'}  # no "conditional" key: files from before it existed
    small = read_info(_onnx_conditional(tmp_path / "ok.onnx", meta))
    assert small.class_names == ["a", "b"]


@pytest.mark.parametrize("which", ["missing", "not onnx", "not a generator"])
def test_gan_serve_load_failure_is_one_line_and_nonzero_exit(tmp_path: Path, which: str,
                                                             models: dict[str, Path]) -> None:
    path, message = _bad_models(tmp_path, models["g32"])[which]
    proc = subprocess.run([sys.executable, "-m", "gan", "serve", str(path), "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_a_taken_port_is_a_clear_error(flag: str, models: dict[str, Path]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = ["--port", port] if flag == "--port" else ["--port", "0", flag, port]
        proc = subprocess.run([sys.executable, "-m", "gan", "serve", str(models["g32"]), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and port in last and "Traceback" not in proc.stderr
