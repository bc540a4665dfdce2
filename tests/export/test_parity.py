"""Models exported from real short training runs: every image size, both output kinds, fp16."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import parity
from export.artifact import ParityError, export
from export.config import ExportConfig
from gan.contract import sha256_file
from tests.helpers import SIZES
from train import checkpoint
from train.model import Generator, init_weights

CONTRACT_KEYS = {"format", "format_version", "nz", "height", "width", "channels", "output",
                 "layout", "value_range", "latent", "dataset", "class_names", "precision",
                 "train_config", "step", "checkpoint_sha256", "producer", "producer_version",
                 "torch_version", "onnx_version", "opset"}


@pytest.mark.parametrize("output", ["float", "uint8"])
@pytest.mark.parametrize("size", SIZES)
def test_export_passes_parity_for_every_size_and_output(exported, size, output):
    result = exported(size, output)
    report = result.report
    assert report.passed, report.lines()
    assert report.provider == "cpu"
    assert [b.batch_size for b in report.batches] == [1, 7, 64]
    assert all(b.max_abs_diff <= report.tolerance for b in report.batches)
    assert report.tolerance == (1e-4 if output == "float" else 1.0)
    assert report.batch_independence_max_abs_diff <= report.tolerance
    saved = json.loads(result.report_path.read_text())
    assert saved["passed"] and saved["model_sha256"] == sha256_file(result.model)
    # one self-contained file: the model and its report, no .onnx.data, no temporary left over
    assert sorted(p.name for p in result.model.parent.iterdir()) == [
        "model.onnx", "model.parity.json"]


@pytest.mark.parametrize("output", ["float", "uint8"])
@pytest.mark.parametrize("size", SIZES)
def test_model_file_contract(exported, runs, size, output):
    result = exported(size, output)
    model = onnx.load(str(result.model))
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}  # folded
    meta = {m.key: m.value for m in model.metadata_props}
    assert CONTRACT_KEYS <= set(meta)
    ckpt = checkpoint.load(runs[size])
    assert meta["format"] == "dcgan-forge/generator"
    assert (meta["nz"], meta["height"], meta["width"], meta["channels"]) == (
        "100", str(size), str(size), "1")
    assert meta["output"] == output and meta["latent"] == "standard_normal"
    assert meta["layout"] == ("NCHW" if output == "float" else "NHWC")
    assert meta["dataset"] == ckpt["config"]["dataset"] and meta["precision"] == "fp32"
    assert meta["step"] == str(ckpt["step"]) == "4"
    assert meta["checkpoint_sha256"] == sha256_file(runs[size] / "checkpoints" / "last.pt")
    assert json.loads(meta["train_config"]) == ckpt["config"]
    assert meta["opset"] == "18" and model.opset_import[0].version == 18


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_runs_from_bytes_with_plain_onnxruntime_and_metadata_alone(exported, output):
    path = exported(64, output).model
    session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    nz, h, w, c = (int(meta[k]) for k in ("nz", "height", "width", "channels"))
    z = np.random.default_rng(1).standard_normal((3, nz), dtype=np.float32)
    (images,) = session.run(["images"], {"z": z})
    if output == "float":
        assert images.dtype == np.float32 and images.shape == (3, c, h, w)
        assert -1 <= images.min() and images.max() <= 1
    else:
        assert images.dtype == np.uint8 and images.shape == (3, h, w, c)
    assert images.std() > 0  # a trained generator draws something, not a constant


def test_fp16_halves_the_file_and_says_how_cpu_ran_it(exported):
    fp32, fp16 = exported(32), exported(32, precision="fp16")
    assert fp16.report.passed, fp16.report.lines()
    assert fp16.report.tolerance == 1e-2
    assert fp16.size_bytes < 0.6 * fp32.size_bytes
    model = onnx.load(str(fp16.model))
    big = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # ONNX Runtime 1.31's CPU provider computes this graph in float32: the report must say so
    # exactly when that happens
    noted = any("fp16 weight rounding" in n for n in fp16.report.notes)
    assert noted == parity.upcasts_fp16(fp16.model)
    assert not parity.upcasts_fp16(fp32.model)


def test_fp16_uint8_passes_within_two_levels(exported):
    report = exported(64, "uint8", "fp16").report
    assert report.passed and report.tolerance == 2.0, report.lines()


def test_parity_catches_a_model_that_is_not_the_generator(exported, runs):
    model = exported(32).model
    torch.manual_seed(123)
    other = Generator(100, 8, 1, 32)
    other.apply(init_weights)
    report = parity.check(other.eval(), model, output="float", precision="fp32",
                          batch_sizes=(1, 3))
    assert not report.passed
    assert min(b.max_abs_diff for b in report.batches) > 1e-4
    genuine = checkpoint.build_generator(checkpoint.load(runs[32]))
    assert parity.check(genuine, model, output="float", precision="fp32",
                        batch_sizes=(1, 3)).passed


def test_failed_parity_keeps_the_previous_model(exported, runs, tmp_path):
    out = tmp_path / "g.onnx"
    export(ExportConfig(checkpoint=str(runs[32]), out=str(out), batch_sizes=(1, 2)))
    before, report_before = out.read_bytes(), (tmp_path / "g.parity.json").read_bytes()
    # fp16 weights cannot meet a 1e-12 bound: a genuine parity failure
    bad = ExportConfig(checkpoint=str(runs[32]), out=str(out), precision="fp16",
                       batch_sizes=(1, 2), tolerance=1e-12)
    with pytest.raises(ParityError, match="left as it was"):
        export(bad)
    assert out.read_bytes() == before
    assert (tmp_path / "g.parity.json").read_bytes() == report_before
    failed = json.loads((tmp_path / "g.parity-failed.json").read_text())
    assert failed["passed"] is False and failed["precision"] == "fp16"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "g.onnx", "g.parity-failed.json", "g.parity.json"]


def test_no_check_writes_the_model_without_a_report(runs, tmp_path):
    out = tmp_path / "g.onnx"
    result = export(ExportConfig(checkpoint=str(runs[32]), out=str(out), check=False))
    assert result.report is None and result.report_path is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]


def test_no_check_removes_the_report_of_the_replaced_model(runs, tmp_path):
    out = tmp_path / "g.onnx"
    export(ExportConfig(checkpoint=str(runs[32]), out=str(out), batch_sizes=(1, 2)))
    assert (tmp_path / "g.parity.json").exists()
    export(ExportConfig(checkpoint=str(runs[64]), out=str(out), check=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]  # no PASS for another file


def test_run_directory_and_checkpoint_file_give_the_same_model(exported, runs, tmp_path):
    out = tmp_path / "g.onnx"
    export(ExportConfig(checkpoint=str(runs[32] / "checkpoints" / "last.pt"), out=str(out),
                        check=False))
    assert out.read_bytes() == exported(32).model.read_bytes()  # export is deterministic


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_conditional_model_has_a_labels_input_and_passes_parity(conditional_run, tmp_path,
                                                                 output):
    result = export(ExportConfig(checkpoint=str(conditional_run), output=output,
                                 out=str(tmp_path / "cond.onnx")))
    assert result.report.passed, result.report.lines()
    session = ort.InferenceSession(str(result.model), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {"z": ("tensor(float)", ["batch", 100]),
                      "labels": ("tensor(int64)", ["batch"])}
    meta = session.get_modelmeta().custom_metadata_map
    names = checkpoint.load(conditional_run)["class_names"]
    assert json.loads(meta["class_names"]) == names and meta["conditional"] == "true"
    assert meta["generator"] == "ema"
    # the label steers the image: one latent, two classes, two different images
    z = np.random.default_rng(0).standard_normal((1, 100), dtype=np.float32).repeat(2, axis=0)
    a, b = session.run(None, {"z": z, "labels": np.array([0, 1], np.int64)})[0]
    assert not np.array_equal(a, b)


def test_no_ema_exports_the_raw_generator(runs, exported, tmp_path):
    raw = export(ExportConfig(checkpoint=str(runs[32]), out=str(tmp_path / "raw.onnx"),
                              ema=False))
    assert raw.report.passed
    meta = {m.key: m.value for m in onnx.load(str(raw.model)).metadata_props}
    ema_meta = {m.key: m.value for m in onnx.load(str(exported(32).model)).metadata_props}
    assert (meta["generator"], ema_meta["generator"]) == ("raw", "ema")
    assert meta["conditional"] == "false" and json.loads(meta["class_names"]) == []
    z = np.zeros((1, 100), np.float32)
    run = lambda p: ort.InferenceSession(str(p)).run(None, {"z": z})[0]  # noqa: E731
    assert not np.array_equal(run(raw.model), run(exported(32).model))
