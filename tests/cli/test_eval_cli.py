"""`gan eval` on runs, checkpoints and ONNX models, with the dataset classifier's features."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.helpers import invoke, one_line_user_error

pytestmark = [pytest.mark.fashion_mnist, pytest.mark.usefixtures("quick_classifier")]


def test_eval_of_a_run_writes_its_report_beside_it(runs):
    result = invoke("eval", str(runs[32]), "-n", "200")
    assert result.exit_code == 0, result.output
    assert "FID" in result.output and "precision" in result.output
    report = json.loads((runs[32] / "eval.json").read_text())
    assert report["features"]["name"] == "classifier" and report["features"]["dim"] == 256
    assert report["features"]["test_accuracy"] > 0.8  # the extractor is named, with its quality
    assert report["source"]["kind"] == "checkpoint" and report["source"]["generator"] == "ema"
    assert report["n_fake"] == report["n_real"] == 200 and report["split"] == "test"
    assert report["fid"] > 0 and 0 <= report["precision"] <= 1 and 0 <= report["recall"] <= 1
    assert "class_accuracy" not in report["classifier"]  # unconditional


def test_onnx_model_scores_as_its_checkpoint(runs, exported, tmp_path):
    """The exported model is scored through ONNX Runtime and matches PyTorch's scores."""
    onnx_out, ckpt_out = tmp_path / "onnx.json", tmp_path / "ckpt.json"
    for source, out in ((exported(32).model, onnx_out), (runs[32], ckpt_out)):
        result = invoke("eval", str(source), "-n", "200", "--out", str(out))
        assert result.exit_code == 0, result.output
    a, b = json.loads(onnx_out.read_text()), json.loads(ckpt_out.read_text())
    assert a["source"]["kind"] == "onnx" and a["source"]["provider"] == "cpu"
    assert a["fid"] == pytest.approx(b["fid"], rel=1e-3)
    assert a["precision"] == b["precision"] and a["recall"] == b["recall"]


def test_raw_and_ema_generators_score_differently(runs, tmp_path):
    outs = {}
    for flag in ("--ema", "--no-ema"):
        out = tmp_path / f"{flag}.json"
        assert invoke("eval", str(runs[32]), "-n", "100", flag, "--out", str(out)).exit_code == 0
        outs[flag] = json.loads(out.read_text())
    assert outs["--no-ema"]["source"]["generator"] == "raw"
    assert outs["--ema"]["fid"] != outs["--no-ema"]["fid"]


def test_conditional_model_gets_per_class_accuracy(conditional_run, tmp_path):
    out = tmp_path / "cond.json"
    result = invoke("eval", str(conditional_run), "-n", "100", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "class accuracy" in result.output
    c = json.loads(out.read_text())["classifier"]
    assert len(c["class_accuracy"]) == 10 and "Sneaker" in c["class_accuracy"]
    assert 0 <= c["mean_class_accuracy"] <= 1


def test_bad_sources_are_one_line_errors(tmp_path):
    assert "no checkpoint" in one_line_user_error(invoke("eval", str(tmp_path / "nope")))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert "not a loadable ONNX model" in one_line_user_error(invoke("eval", str(junk)))
    assert "at least 10" in one_line_user_error(invoke("eval", str(junk), "-n", "5"))


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None,
                    reason="torch-fidelity is installed here")
def test_inception_without_torch_fidelity_says_what_to_do(runs):
    message = one_line_user_error(invoke("eval", str(runs[32]), "--features", "inception"))
    assert "dcgan-forge[inception]" in message and "--features classifier" in message


def test_train_conditional_export_serve_ten_sneakers(conditional_run, tmp_path):
    """The issue's path end to end: a conditional run, exported, served; `gan generate --label
    Sneaker` through the server gives ten images, the same as the local model gives."""
    from tests.helpers import running

    model = tmp_path / "cgan.onnx"
    assert invoke("export", str(conditional_run), "--out", str(model)).exit_code == 0
    with running(model, max_batch_size=4) as server:  # ten images: three batches
        remote = invoke("generate", "--server", server.address, "-n", "10", "--seed", "3",
                        "--label", "Sneaker", "--out", str(tmp_path / "remote.png"),
                        "--out-dir", str(tmp_path / "each"))
        assert remote.exit_code == 0, remote.output
    local = invoke("generate", "--model", str(model), "-n", "10", "--seed", "3", "--label", "7",
                   "--out", str(tmp_path / "local.png"))
    assert local.exit_code == 0, local.output
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    assert len(list((tmp_path / "each").glob("*.png"))) == 10
