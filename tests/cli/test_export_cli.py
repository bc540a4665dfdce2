"""`gan export` and `gan info` through the real typer app, and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan.session import has_nvidia_device
from tests.helpers import invoke, one_line_user_error

ROOT = Path(__file__).resolve().parents[2]


def test_export_run_dir_then_info(runs, tmp_path):
    out = tmp_path / "g.onnx"
    result = invoke("export", str(runs[32]), "--out", str(out), "--output", "uint8",
                    "--batch-sizes", "1,5")
    assert result.exit_code == 0, result.output
    assert "parity PASS" in result.output and "batch    5" in result.output
    assert (tmp_path / "g.parity.json").is_file()

    info = invoke("info", str(out), "--json")
    assert info.exit_code == 0, info.output
    d = json.loads(info.output)
    assert d["dcgan_forge"] and d["metadata"]["output"] == "uint8"
    assert d["inputs"] == [{"name": "z", "dtype": "float32", "shape": ["batch", 100]}]
    assert d["outputs"] == [{"name": "images", "dtype": "uint8", "shape": ["batch", 32, 32, 1]}]
    assert d["size_bytes"] == out.stat().st_size and d["parameters"] > 0
    assert d["parity"]["passed"] and d["parity"]["provider"] == "cpu"
    assert d["parity"]["max_abs_diff"] <= 1

    table = invoke("info", str(out))
    assert table.exit_code == 0
    for text in ("images", "[batch, 32, 32, 1]", "standard_normal", "checkpoint_sha256",
                 "PASS on cpu"):
        assert text in table.output

    (tmp_path / "g.parity.json").write_text("{}")  # a report of another model: not shown
    assert json.loads(invoke("info", str(out), "--json").output)["parity"] is None


def test_missing_checkpoint(tmp_path):
    msg = one_line_user_error(invoke("export", str(tmp_path / "nope.pt"), "--out",
                                     str(tmp_path / "g.onnx")))
    assert "no checkpoint at" in msg


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    assert "cannot read checkpoint" in one_line_user_error(invoke("export", str(text)))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert "not a dcgan-forge checkpoint" in one_line_user_error(invoke("export", str(other)))
    assert "not an ONNX model" in one_line_user_error(invoke("info", str(text)))
    assert "no model at" in one_line_user_error(invoke("info", str(tmp_path / "x.onnx")))


@pytest.mark.parametrize("sizes", ["1,x", "0,4", ",", "-3"])
def test_bad_batch_sizes(runs, sizes):
    assert "--batch-sizes" in one_line_user_error(invoke("export", str(runs[32]),
                                                         "--batch-sizes", sizes))


def test_bad_out_and_opset(runs, tmp_path):
    assert ".onnx" in one_line_user_error(invoke("export", str(runs[32]), "--out",
                                                 str(tmp_path / "g.bin")))
    assert "opset" in one_line_user_error(invoke("export", str(runs[32]), "--opset", "11"))


@pytest.mark.skipif(has_nvidia_device(), reason="checks the behaviour without a GPU")
def test_gpu_provider_on_a_cpu_machine_fails_before_exporting(runs, tmp_path):
    out = tmp_path / "g.onnx"
    msg = one_line_user_error(invoke("export", str(runs[32]), "--out", str(out),
                                     "--providers", "cuda"))
    assert "needs an NVIDIA GPU" in msg and "--providers cpu" in msg
    assert list(tmp_path.iterdir()) == []


def test_gan_main_prints_one_line_and_exits_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gan", "export", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no checkpoint at {tmp_path / 'nope'}: train first, or give a .pt file or run dir"]
