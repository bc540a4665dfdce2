"""Two CPU processes under torchrun (gloo): data-parallel training of a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train import checkpoint

pytestmark = pytest.mark.fashion_mnist


@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])  # wgan-gp: a penalty through the DDP wrapper
def test_two_process_ddp_run(tmp_path: Path, loss: str) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "gan", "train", "--split", "test", "--ngf", "8",
           "--ndf", "8", "--batch-size", "16", "--max-steps", "3", "--log-every", "1",
           "--device", "cpu", "--precision", "fp32", "--num-samples", "4", "--loss", loss,
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = checkpoint.load(out)
    assert ckpt["step"] == 3
    assert len(ckpt["rng"]["noise"]) == 2  # each rank's latent stream is saved
    assert not torch.equal(ckpt["rng"]["noise"][0], ckpt["rng"]["noise"][1])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # rank 0 alone writes logs
    # images/s counts both processes' batches
    assert json.loads(lines[-1])["speed/images_per_s"] > 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-3.png"]
    # only rank 0 logs progress and prints the closing summary
    assert done.stderr.count("INFO train.loop: training ") == 1, done.stderr[-3000:]
    assert done.stderr.count("INFO train.data: ") == 1
    assert done.stdout.count("trained 3 steps (96 images)") == 1, done.stdout
