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

REPO = Path(__file__).parents[2]

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


# Run under torchrun in place of `-m gan`: "products" makes every pass train/gemm_conv.py can do
# as a matrix product one (the stride-2 layers' convolutions and weight gradients) and counts the
# layers that took them, so the test knows the product path ran; "plain" switches it off.
_PRODUCTS_RUNNER = '''
import atexit, sys
from train import gemm_conv
if sys.argv.pop(1) == "products":
    calls = []
    def every_pass(*args, **kwargs):
        calls.append(1)
        return gemm_conv.Plan(conv=True, weight=True)
    gemm_conv.plan = every_pass
    # one write: both ranks print at exit into one pipe
    atexit.register(lambda: sys.stderr.write(f"product plans: {len(calls)}\\n"))
else:
    gemm_conv.ENABLED = False
from gan.cli import main
main()
'''


def _ddp_run(tmp_path: Path, name: str) -> tuple[dict[str, torch.Tensor], str]:
    """3 steps on 2 processes; the final G and D weights, and stderr."""
    runner = tmp_path / "runner.py"
    runner.write_text(_PRODUCTS_RUNNER)
    out = tmp_path / name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", str(runner), name, "train", "--split", "test", "--ngf", "8",
           "--ndf", "8", "--batch-size", "16", "--max-steps", "3", "--device", "cpu",
           "--precision", "fp32", "--num-samples", "4", "--out", str(out)]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = checkpoint.load(out)
    weights = {**{f"g.{k}": v for k, v in ckpt["generator"].items()},
               **{f"d.{k}": v for k, v in ckpt["discriminator"].items()}}
    return weights, done.stderr


def test_ddp_averages_the_matrix_product_passes_gradients(tmp_path: Path) -> None:
    """Where conv passes are matrix products (train/gemm_conv.py; forced here, since which layers
    take them depends on the CPU), DDP still averages those weight gradients across ranks: the
    run ends where oneDNN's convolutions end, to rounding (measured: 6e-7 at most). With rank 1's
    product gradients zeroed, weights ended up to 2.5e-3 away (Adam steps of up to lr = 4e-4)."""
    plain, _ = _ddp_run(tmp_path, "plain")
    products, stderr = _ddp_run(tmp_path, "products")
    counts = [line.split()[-1] for line in stderr.splitlines()
              if line.startswith("product plans: ")]
    assert len(counts) == 2 and all(int(c) > 0 for c in counts), stderr[-3000:]  # both ranks
    for k, v in plain.items():
        if v.is_floating_point():
            torch.testing.assert_close(products[k], v, rtol=0, atol=2e-5, msg=k)
