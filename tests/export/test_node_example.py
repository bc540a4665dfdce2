"""The Node example (examples/node) runs exported models with onnxruntime-node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

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
        # the CPU binaries ship inside the npm package; the post-install would fetch CUDA ones
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, env=env,
                              capture_output=True, text=True, timeout=300)
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
