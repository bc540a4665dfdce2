"""The Node example (examples/node) runs exported models with onnxruntime-node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest

pytestmark = [
    pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                       reason="needs node and npm"),
]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"


@pytest.fixture(scope="module")
def example() -> Path:
    """The example folder with onnxruntime-node installed (npm ci from the lockfile if missing)."""
    if not (EXAMPLE / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        # the CPU binaries ship inside the npm package; its install script would fetch CUDA ones
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                              cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.fail("npm ci in examples/node failed (run `make setup`): "
                        + proc.stderr.strip()[-500:])
    return EXAMPLE


def node(example: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", "generate.mjs", *args], cwd=example, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_node_generates_images_of_the_promised_shape_and_range(example, exported, output,
                                                               tmp_path):
    model = exported(64, output).model
    pnm = tmp_path / "first.pnm"
    proc = node(example, str(model), "5", str(pnm))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads(proc.stdout)
    assert summary["ok"] and summary["problems"] == []
    if output == "float":
        assert summary["dims"] == [5, 1, 64, 64] and summary["type"] == "float32"
        assert -1 <= summary["min"] < summary["max"] <= 1
    else:
        assert summary["dims"] == [5, 64, 64, 1] and summary["type"] == "uint8"
        assert 0 <= summary["min"] < summary["max"] <= 255
    header = b"P5\n64 64\n255\n"
    data = pnm.read_bytes()
    assert data.startswith(header) and len(data) == len(header) + 64 * 64


def test_node_runs_an_mlp_generator_unchanged(example, mlp_model, tmp_path):
    """A 28x28 fully connected generator is just another shape to the example."""
    pnm = tmp_path / "first.pnm"
    proc = node(example, str(mlp_model.model), "3", str(pnm))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads(proc.stdout)
    assert summary["ok"] and summary["dims"] == [3, 1, 28, 28]
    assert pnm.read_bytes().startswith(b"P5\n28 28\n255\n")


def test_node_refuses_a_file_that_is_not_a_generator(example, runs):
    proc = node(example, str(runs[32] / "config.json"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")


@pytest.fixture(scope="module")
def conditional_model(conditional_run, tmp_path_factory) -> Path:
    from export.artifact import export
    from export.config import ExportConfig

    out = tmp_path_factory.mktemp("cond-model") / "cgan.onnx"
    return export(ExportConfig(checkpoint=str(conditional_run), out=str(out))).model


def test_node_feeds_labels_to_a_conditional_model(example, conditional_model):
    meta = {p.key: p.value for p in onnx.load(str(conditional_model)).metadata_props}
    names = json.loads(meta["class_names"])
    assert len(names) >= 2
    cycled = node(example, str(conditional_model), "12")  # no --label: the classes in turn
    assert cycled.returncode == 0, cycled.stderr + cycled.stdout
    summary = json.loads(cycled.stdout)
    assert summary["ok"] and summary["conditional"]
    assert summary["labels"] == [names[i % len(names)] for i in range(12)]
    means = {}
    for label in (names[-1].upper(), str(len(names) - 1), names[0]):  # a name (any case) or index
        proc = node(example, str(conditional_model), "4", "--label", label)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        got = json.loads(proc.stdout)
        assert got["ok"] and got["labels"] == [names[-1] if label != names[0] else names[0]] * 4
        means[label] = got["mean"]
    assert means[names[-1].upper()] == means[str(len(names) - 1)] != means[names[0]]


def test_node_label_errors_are_one_line(example, conditional_model, exported):
    for model, label, message in ((conditional_model, "Nope", "no such class; give an index"),
                                  (conditional_model, "99", "out of range"),
                                  (exported(32).model, "0", "this model is unconditional")):
        proc = node(example, str(model), "2", "--label", label)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.startswith("error: --label ") and message in proc.stderr
        assert proc.stderr.count("\n") == 1
