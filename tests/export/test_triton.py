"""`gan export-triton`: the written config.pbtxt parses into Triton's own ModelConfig message
(tritonclient's model_config_pb2, in .venv-triton: tritonclient needs protobuf < 7, this
project's stubs protobuf 7; see tests/serve/triton.py) and its tensors match the ONNX file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import helper
from typer.testing import Result

from tests.helpers import FASHION_MNIST_CLASSES, export_generator, invoke, one_line_user_error
from tests.serve import triton as triton_venv

# Runs in .venv-triton: strict text-format parse (an unknown field or a wrong enum fails), then
# the message as JSON plus each tensor's numpy dtype by tritonclient's own mapping.
PARSE = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import triton_to_np_dtype
config = text_format.Parse(open(sys.argv[1], encoding="utf-8").read(),
                           model_config_pb2.ModelConfig())
d = json_format.MessageToDict(config, preserving_proto_field_name=True)
for t in d.get("input", []) + d.get("output", []):
    t["np_dtype"] = triton_to_np_dtype(t["data_type"].removeprefix("TYPE_")).__name__
print(json.dumps(d))
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("triton-models")
    return {name: export_generator(folder, name) for name in ("g32", "g32_uint8", "g32_cond")}


def parse(config: Path) -> dict[str, Any]:
    """config.pbtxt -> Triton's ModelConfig as a dict, parsed by tritonclient's proto."""
    if not triton_venv.available():
        pytest.skip(f"no .venv-triton with tritonclient at {triton_venv.PYTHON}: run `make setup`")
    done = subprocess.run([str(triton_venv.PYTHON), "-c", PARSE, str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def export_triton(*args: str) -> Result:
    return invoke("export-triton", *args)


def onnx_tensors(path: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (numpy dtype name, shape with -1 for the batch axis) of the graph's tensors."""
    graph = onnx.load(str(path)).graph
    out = {}
    for v in [*graph.input, *graph.output]:
        t = v.type.tensor_type
        out[v.name] = (helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                       [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim])
    return out


def triton_tensors(config: dict[str, Any]) -> dict[str, tuple[str, list[int]]]:
    """The same from Triton's view: [-1] + dims, or [-1] + reshape.shape where one is given."""
    out = {}
    for t in config["input"] + config["output"]:
        dims = [int(d) for d in t.get("reshape", {"shape": t["dims"]}).get("shape", [])]
        out[t["name"]] = (t["np_dtype"], [-1, *dims])
    return out


@pytest.mark.parametrize("name", ["g32", "g32_uint8", "g32_cond"])
def test_config_parses_as_triton_model_config_and_matches_the_onnx_file(models, tmp_path, name):
    result = export_triton(str(models[name]), "--repo", str(tmp_path / "repo"), "--instances", "3")
    assert result.exit_code == 0, result.output
    entry = tmp_path / "repo" / name
    assert (entry / "1" / "model.onnx").read_bytes() == models[name].read_bytes()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [name]  # no temp left

    config = parse(entry / "config.pbtxt")
    assert config["name"] == name and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 64
    assert triton_tensors(config) == onnx_tensors(models[name])
    batching = config["dynamic_batching"]
    assert batching["preferred_batch_size"] == [16, 32, 64]
    assert 0 < int(batching["max_queue_delay_microseconds"]) <= 10_000
    assert config["instance_group"] == [{"count": 3}]  # kind KIND_AUTO, the enum's 0: omitted
    assert "optimization" not in config
    meta = {m.key: m.value for m in onnx.load(str(models[name])).metadata_props}
    assert {k: v["string_value"] for k, v in config["parameters"].items()} == meta
    if name == "g32_cond":
        assert json.loads(config["parameters"]["class_names"]["string_value"]) == list(
            FASHION_MNIST_CLASSES)


def test_tensorrt_accelerator_with_fp16_and_its_cache(models, tmp_path):
    result = export_triton(str(models["g32_cond"]), "--repo", str(tmp_path), "--name", "dcgan",
                    "--tensorrt", "--max-batch-size", "8", "--trt-cache-dir", "/cache")
    assert result.exit_code == 0, result.output
    config = parse(tmp_path / "dcgan" / "config.pbtxt")
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]
    assert config["dynamic_batching"]["preferred_batch_size"] == [2, 4, 8]
    [trt] = config["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
    assert trt["name"] == "tensorrt"
    p = trt["parameters"]
    assert p["precision_mode"] == "FP16" and p["trt_engine_cache_enable"] == "1"
    assert p["trt_engine_cache_path"] == "/cache/dcgan"
    assert p["trt_profile_min_shapes"] == "z:1x100,labels:1"
    assert p["trt_profile_max_shapes"] == "z:8x100,labels:8"


def test_an_existing_entry_is_replaced_whole(models, tmp_path):
    repo = tmp_path / "repo"
    assert export_triton(str(models["g32"]), "--repo", str(repo), "--name", "m").exit_code == 0
    (repo / "m" / "2").mkdir()  # something of the old entry's only: must be gone after
    result = export_triton(str(models["g32_uint8"]), "--repo", str(repo), "--name", "m")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir()) == ["m"]
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["1", "config.pbtxt"]
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == models["g32_uint8"].read_bytes()
    assert "TYPE_UINT8" in (repo / "m" / "config.pbtxt").read_text()


def test_bad_input_is_one_line_and_leaves_the_repository_alone(models, tmp_path):
    repo = tmp_path / "repo"
    assert export_triton(str(models["g32"]), "--repo", str(repo)).exit_code == 0
    before = (repo / "g32" / "config.pbtxt").read_bytes()
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(models["g32"]))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    cases = [
        ([str(tmp_path / "missing.onnx")], "no model at"),
        ([str(junk)], "is not an ONNX model"),
        ([str(foreign)], "not a dcgan-forge generator"),
        ([str(models["g32"]), "--max-batch-size", "0"], "--max-batch-size must be at least 1"),
        ([str(models["g32"]), "--instances", "0"], "--instances must be at least 1"),
        ([str(models["g32"]), "--name", "../g32"], "cannot be a model folder name"),
    ]
    for args, expected in cases:
        result = export_triton(*args, "--repo", str(repo))
        assert expected in one_line_user_error(result)
    assert (repo / "g32" / "config.pbtxt").read_bytes() == before
    assert sorted(p.name for p in repo.iterdir()) == ["g32"]
