"""Real `gan train` processes stopped by real signals: the step finishes, last.pt is saved, one
line says where it stopped and how to resume, and the resume works."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train import checkpoint

pytestmark = pytest.mark.fashion_mnist

ROOT = Path(__file__).resolve().parents[2]
# Tiny, and long enough never to end by itself; the default --checkpoint-every 500 is kept, so
# no periodic checkpoint is written before the signal.
TRAIN = ["train", "--split", "test", "--ngf", "8", "--ndf", "8", "--batch-size", "16",
         "--log-every", "1", "--device", "cpu", "--precision", "fp32", "--num-samples", "4",
         "--epochs", "1000"]


def total(world: int = 1) -> int:
    """Steps of TRAIN: 1000 epochs of each rank's share of the 10,000 test images, 16 a batch."""
    return 1000 * (10000 // world // 16)
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _stop_once_training(cmd: list[str], out: Path, signum: int, group: bool = False
                        ) -> subprocess.CompletedProcess[str]:
    """Start `cmd`, wait until it has logged a step, send `signum` (to its whole process group,
    as a terminal's Ctrl-C does, when `group`), and wait for it to exit."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=ENV, start_new_session=group)
    try:
        deadline = time.monotonic() + 240
        metrics = out / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().strip()):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.05)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_step_and_says_how_to_resume(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "run"
    done = _stop_once_training([sys.executable, "-m", "gan", *TRAIN, "--out", str(out)], out,
                               signum)
    assert done.returncode == 128 + signum, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    step = checkpoint.load(out)["step"]
    logged = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert step >= 1 and logged[-1] == step  # the step it was in finished, and was saved
    assert not checkpoint.step_files(out / "checkpoints")  # before the first periodic one
    name = signal.Signals(signum).name
    resume = f"gan train --resume --out {shlex.quote(str(out))}"
    assert done.stderr.splitlines()[-1] == (
        f"interrupted by {name} at step {step} of {total()}: saved {out}/checkpoints/last.pt; "
        f"resume with: {resume}")
    assert [x for x in done.stderr.splitlines() if "interrupted" in x] == \
        [done.stderr.splitlines()[-1]]
    if signum == signal.SIGTERM:
        return
    argv = shlex.split(resume)[1:]  # the printed command, through this interpreter
    again = subprocess.run([sys.executable, "-m", "gan", *argv, "--max-steps", str(step + 1)],
                           capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert checkpoint.load(out)["step"] == step + 1


def test_ctrl_c_under_torchrun_stops_every_rank_at_one_step(tmp_path: Path) -> None:
    """Ctrl-C reaches both ranks and the torchrun agent (which sends SIGINT on): the ranks agree
    on one step, rank 0 saves it and prints the torchrun resume command."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "gan", *TRAIN, "--out", str(out)]
    done = _stop_once_training(cmd, out, signal.SIGINT, group=True)
    assert done.returncode != 0
    ckpt = checkpoint.load(out)
    assert ckpt["step"] >= 1 and len(ckpt["rng"]["noise"]) == 2
    resume = f"torchrun --standalone --nproc-per-node 2 -m gan train --resume --out {out}"
    lines = [x for x in done.stderr.splitlines() if x.startswith("interrupted by SIGINT")]
    assert lines == [f"interrupted by SIGINT at step {ckpt['step']} of {total(2)}: saved "
                     f"{out}/checkpoints/last.pt; resume with: {resume}"], done.stderr[-3000:]
