"""gan.session on real ONNX Runtime sessions; GPU-only checks live in
tests/export/test_gpu_parity.py and skip without a GPU. Torch-free, like serve, which uses it."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from gan.errors import UserError
from gan.session import (
    ProviderError,
    Session,
    SessionOptions,
    _provider_options,
    create_session,
    has_nvidia_device,
    judge,
)

NZ = 6
no_gpu = pytest.mark.skipif(has_nvidia_device(), reason="checks the behaviour without a GPU")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    """A real two-node model with the generator's contract: z [batch, NZ] -> images [batch, 4]."""
    w = numpy_helper.from_array(np.arange(NZ * 4, dtype=np.float32).reshape(NZ, 4) / 10, "w")
    nodes = [helper.make_node("MatMul", ["z", "w"], ["h"]),
             helper.make_node("Tanh", ["h"], ["images"])]
    graph = helper.make_graph(
        nodes,
        "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", NZ])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 4])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(m, full_check=True)
    path = tmp_path_factory.mktemp("providers") / "m.onnx"
    onnx.save(m, str(path))
    return path


@no_gpu
def test_auto_picks_cpu_here_and_reports_it(model):
    s = create_session(model, SessionOptions(providers="auto", max_batch=8))
    assert (s.provider, s.requested, s.fell_back) == ("cpu", "auto", False)
    assert s.session.get_providers() == ["CPUExecutionProvider"]
    z = np.ones((3, NZ), np.float32)
    assert s.session.run(["images"], {"z": z})[0].shape == (3, 4)


def test_cpu_on_request(model):
    s = create_session(model, SessionOptions(providers="cpu", intra_op_threads=1))
    assert (s.provider, s.fell_back) == ("cpu", False)


@no_gpu
@pytest.mark.parametrize("choice", ["cuda", "tensorrt"])
def test_gpu_provider_without_gpu_is_one_line_user_error(model, choice):
    with pytest.raises(ProviderError) as e:
        create_session(model, SessionOptions(providers=choice))
    assert isinstance(e.value, UserError)
    assert "\n" not in str(e.value)
    assert f"provider {choice} needs an NVIDIA GPU" in str(e.value)
    assert "--providers cpu" in str(e.value)


def test_unknown_provider(model):
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        create_session(model, SessionOptions(providers="tpu"))


def test_tensorrt_falling_back_to_cuda_is_reported_not_hidden(model, caplog):
    # What onnxruntime-gpu does on a GPU machine without libnvinfer: the session runs on CUDA.
    cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    on_cuda = Session(session=cpu, provider="cuda", requested="tensorrt")
    assert on_cuda.fell_back
    with caplog.at_level(logging.WARNING, logger="gan.session"):
        judge(on_cuda)
    assert "asked for tensorrt, but ONNX Runtime runs the model on cuda" in caplog.text
    with pytest.raises(ProviderError, match="provider cuda did not load"):
        judge(Session(session=cpu, provider="cpu", requested="cuda"))
    judge(Session(session=cpu, provider="cuda", requested="auto"))  # auto takes what loads


def _inputs(model) -> list:
    cheap = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return cheap.get_inputs()


def test_tensorrt_options_pin_the_profile_and_cache_beside_the_model(model, tmp_path):
    opts = SessionOptions(providers="tensorrt", fp16=True, max_batch=64, opt_batch=16)
    inputs = _inputs(model)
    o = _provider_options("tensorrt", model, inputs, NZ, opts)
    assert o["trt_profile_min_shapes"] == f"z:1x{NZ}"
    assert o["trt_profile_opt_shapes"] == f"z:16x{NZ}"
    assert o["trt_profile_max_shapes"] == f"z:64x{NZ}"
    assert o["trt_fp16_enable"] is True
    cache = model.with_suffix(".trt-cache")
    assert o["trt_engine_cache_path"] == o["trt_timing_cache_path"] == str(cache)
    assert cache.is_dir()
    custom = _provider_options("tensorrt", model, inputs, NZ,
                               SessionOptions(cache_dir=str(tmp_path / "c")))
    assert custom["trt_engine_cache_path"] == str(tmp_path / "c")
    assert _provider_options("cuda", model, inputs, NZ, SessionOptions(tf32=False)) == {
        "use_tf32": 0}
    assert _provider_options("cpu", model, inputs, NZ, SessionOptions()) == {}


def test_conditional_model_profile_names_labels_and_warms_up(tmp_path):
    """A model with the conditional contract (z [batch, NZ], labels int64 [batch]): TensorRT's
    profile gives labels a 1-d shape, and the warm-up feeds both inputs."""
    table = numpy_helper.from_array(np.eye(3, 4, dtype=np.float32), "table")  # 3 classes
    w = numpy_helper.from_array(np.ones((NZ, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["z", "w"], ["h"]),
             helper.make_node("Gather", ["table", "labels"], ["e"]),
             helper.make_node("Add", ["h", "e"], ["images"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", NZ]),
                     helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 4])], [table, w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    path = tmp_path / "cond.onnx"
    onnx.save(m, str(path))
    o = _provider_options("tensorrt", path, _inputs(path), NZ,
                          SessionOptions(max_batch=8, cache_dir=str(tmp_path / "c")))
    assert o["trt_profile_max_shapes"] == f"z:8x{NZ},labels:8"
    s = create_session(path, SessionOptions(providers="cpu", max_batch=8))
    out = s.session.run(None, {"z": np.zeros((2, NZ), np.float32),
                               "labels": np.array([0, 2], np.int64)})[0]
    np.testing.assert_array_equal(out, np.eye(3, 4, dtype=np.float32)[[0, 2]])
