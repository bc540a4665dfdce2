from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from train.config import TrainConfig


def test_help_documents_every_option(gan_cli) -> None:
    code, out, _ = gan_cli("train", "--help")
    assert code == 0
    text = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", out))
    for f in fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert "--resume" in text and "torchrun" in text


def test_help_is_fast_and_imports_no_heavy_stack() -> None:
    code = ("import sys; from gan.cli import app; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'grpc', 'onnx') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--image-size", "48"], "image size 48 is not supported"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--dataset", "folder"], "needs --data-dir"),
    (["--dataset", "folder", "--data-dir", "/nonexistent/images"], "is not a directory"),
    (["--lr-g", "0"], "learning rates must be positive"),
    (["--beta1", "1.5"], "Adam betas must be in [0, 1)"),
    (["--arch", "mlp", "--mlp-hidden-g", "256,x"], "a comma list of integers like 512,256"),
    (["--arch", "mlp", "--mlp-hidden-d", "0"], "mlp_hidden_d needs at least one hidden width"),
    (["--arch", "mlp", "--image-size", "4"], "not supported by mlp"),
    (["--image-size", "28"], "or --arch mlp"),
])
def test_bad_input_is_one_line(gan_cli, tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = gan_cli("train", "--out", str(tmp_path / "run"), *args)
    assert code == 1
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.fashion_mnist
def test_file_system_errors_are_one_line(gan_cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = gan_cli("train", "--split", "test", "--ngf", "8", "--ndf", "8",
                           "--max-steps", "1", "--out", str(blocker / "run"))
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == f"error: Not a directory: {blocker / 'run'}"


@pytest.mark.fashion_mnist
def test_mlp_from_the_command_line(gan_cli, tmp_path: Path) -> None:
    code, _, err = gan_cli("train", "--arch", "mlp", "--split", "test", "--mlp-hidden-g", "32,16",
                           "--mlp-hidden-d", "16", "--max-steps", "1", "--batch-size", "16",
                           "--out", str(tmp_path / "run"))
    assert code == 0, err
    config = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["config"]
    assert (config["arch"], config["image_size"]) == ("mlp", 28)
    assert config["mlp_hidden_g"] == [32, 16] and config["mlp_hidden_d"] == [16]  # plain JSON types
    code, _, err = gan_cli("train", "--resume", "--arch", "dcgan", "--out", str(tmp_path / "run"))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: --arch cannot change when resuming (the run has arch='mlp')")


def test_unknown_loss_is_a_usage_error(gan_cli, tmp_path: Path) -> None:
    code, _, err = gan_cli("train", "--loss", "bce", "--out", str(tmp_path))
    assert code == 2 and "bce" in err


def test_resume_without_or_with_foreign_checkpoint(gan_cli, tmp_path: Path) -> None:
    code, _, err = gan_cli("train", "--resume", "--out", str(tmp_path / "none"))
    assert code == 1 and "--resume: no checkpoint" in err
    foreign = tmp_path / "foreign" / "checkpoints" / "last.pt"
    foreign.parent.mkdir(parents=True)
    torch.save({"model": {}}, foreign)
    code, _, err = gan_cli("train", "--resume", "--out", str(tmp_path / "foreign"))
    assert code == 1 and "not a dcgan-forge checkpoint" in err


@pytest.mark.fashion_mnist
def test_train_command_end_to_end(gan_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = gan_cli("train", "--split", "test", "--ngf", "8", "--ndf", "8",
                                "--batch-size", "16", "--max-steps", "2", "--precision", "fp32",
                                "--out", str(out))
    assert code == 0, err
    assert (out / "checkpoints" / "last.pt").is_file()
    assert (out / "samples" / "step-2.png").is_file()
    assert "precision fp32" in err  # the flag's word, not torch.float32
    # the closing summary: how much, how fast, where everything is, what to run next
    lines = stdout.splitlines()
    assert lines[0].startswith("trained 2 steps (32 images) in ") and "images/s" in lines[0]
    for where in (out / "checkpoints" / "last.pt", out / "samples" / "step-2.png",
                  out / "metrics.jsonl", f"tensorboard --logdir {out / 'tb'}"):
        assert str(where) in stdout
    assert lines[-1] == f"next: gan export {out} --out {out / 'g.onnx'}"
    code, stdout, err = gan_cli("train", "--resume", "--max-steps", "3", "--out", str(out))
    assert code == 0, err
    assert stdout.startswith("trained 1 steps (16 images)")  # this process's share
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
