from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import train_tiny
from train import checkpoint
from train.checkpoint import CheckpointError
from train.run import run

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.fashion_mnist


def test_round_trip_weights_only(tiny_run: Path) -> None:
    ckpt = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["format"] == checkpoint.FORMAT and ckpt["format_version"] == 1
    assert ckpt["step"] == 4 and ckpt["config"]["channels"] == 1
    assert {"generator", "discriminator", "optimizer_g", "optimizer_d", "rng", "epoch"} <= set(ckpt)
    loaded = checkpoint.load(tiny_run)  # a run dir means its last.pt
    raw = checkpoint.build_generator(loaded, ema=False)
    assert not raw.training and checkpoint.generator_kind(loaded, ema=False) == "raw"
    assert raw(torch.randn(2, 100)).shape == (2, 1, 32, 32)
    for k, v in raw.state_dict().items():
        assert torch.equal(v, ckpt["generator"][k])
    g = checkpoint.build_generator(loaded)  # EMA is on by default: the averaged generator
    assert checkpoint.generator_kind(loaded) == "ema" and ckpt["generator_ema"]["updates"] == 4
    for k, v in g.state_dict().items():
        assert torch.equal(v, ckpt["generator_ema"]["weights"][k])


def test_periodic_checkpoints_are_pruned(tiny_run: Path) -> None:
    steps = [s for s, _ in checkpoint.step_files(tiny_run / "checkpoints")]
    assert steps == [2, 4]  # checkpoint_every 2, keep 2
    assert not list((tiny_run / "checkpoints").glob(".*.tmp"))


def test_crash_mid_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    path = tmp_path / "last.pt"
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "step": 1}, path)
    before = path.read_bytes()

    def torn_save(obj: object, f: object) -> None:
        f.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_save({"step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


def test_foreign_and_corrupt_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a dcgan-forge checkpoint"):
        checkpoint.load(foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(corrupt)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing")


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.pt"
    torch.save({"format": checkpoint.FORMAT, "format_version": 99}, path)
    with pytest.raises(CheckpointError, match="upgrade"):
        checkpoint.load(path)


def _killed_mid_write(path: Path) -> None:
    """A real process SIGKILLed inside atomic_write(path): it leaves its temporary behind."""
    code = ("import os, signal, sys; from gan.atomic import atomic_write; "
            "atomic_write(sys.argv[1], lambda f: (f.write(b'half'), f.flush(), "
            "os.kill(os.getpid(), signal.SIGKILL)))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGKILL


def test_resume_removes_temporaries_of_killed_writes(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", max_steps=2)
    folder = out / "checkpoints"
    for name in ("last.pt", "step-4.pt", "best.pt"):
        _killed_mid_write(folder / name)
    _killed_mid_write(out / "config.json")
    _killed_mid_write(out / "samples" / "step-4.png")
    left = sorted(p.name for p in out.rglob(".*.tmp"))
    assert len(left) == 5 and any(n.startswith(".step-4.pt.") for n in left)
    theirs = [folder / ".notes.tmp", folder / "last.pt.tmp", out / ".my.draft.tmp"]
    for p in theirs:  # not our naming: never touched
        p.write_text("someone else's")
    run({"max_steps": 3}, out=str(out), resume=True)
    assert sorted(out.rglob("*.tmp")) == sorted(theirs)
    assert checkpoint.load(out)["step"] == 3
