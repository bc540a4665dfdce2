"""Real training steps on the real Fashion-MNIST test split, with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import TINY, train_on_flat_folder, train_tiny
from train import checkpoint, distributed
from train.checkpoint import CheckpointError
from train.config import LOSSES, ConfigError, TrainConfig
from train.loop import Trainer
from train.run import run

pytestmark = pytest.mark.fashion_mnist


def test_run_writes_everything(tiny_run: Path) -> None:
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["channels"] == 1 and config["dataset"] == "fashion-mnist"  # resolved
    grid = Image.open(tiny_run / "samples" / "step-4.png")
    # 16 samples, 4 x 4, 2 px white padding, grayscale like gan generate's grids, upscaled 4x
    # (nearest) to be at least 512 px wide
    assert grid.mode == "L" and grid.size == (4 * (4 * 34 + 2), 4 * (4 * 34 + 2))
    pixels = np.asarray(grid)[::4, ::4]
    assert pixels[0].min() == 255 and pixels[:, 0].min() == 255
    np.testing.assert_array_equal(np.asarray(grid), pixels.repeat(4, 0).repeat(4, 1))
    lines = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]
    assert {"loss/d", "loss/g", "d/real", "d/fake", "speed/images_per_s"} <= set(lines[0])
    assert all(0 <= x["d/real"] <= 1 for x in lines)
    assert list((tiny_run / "tb").glob("events.out.tfevents.*"))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return _named(checkpoint.load(run_dir))


def _named(ckpt: dict) -> dict[str, torch.Tensor]:
    """G's, D's and the EMA generator's tensors of a checkpoint dict, under one namespace."""
    return {**{f"g.{k}": v for k, v in ckpt["generator"].items()},
            **{f"d.{k}": v for k, v in ckpt["discriminator"].items()},
            **{f"ema.{k}": v for k, v in ckpt["generator_ema"]["weights"].items()}}


def test_resume_is_exact(tmp_path: Path) -> None:
    """Interrupted at step 3 (mid-epoch, off the checkpoint cadence) and resumed to step 7, a run
    ends with the same weights, bit for bit, as one that ran 7 steps straight."""
    straight = train_tiny(tmp_path / "straight", max_steps=7, loss="wgan-gp", d_steps=2)
    cut = train_tiny(tmp_path / "cut", max_steps=3, loss="wgan-gp", d_steps=2)
    run({"max_steps": 7}, out=str(cut), resume=True)
    a, b = _weights(straight), _weights(cut)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged"
    assert checkpoint.load(cut)["step"] == 7


def test_resume_errors(tmp_path: Path, tiny_run: Path) -> None:
    with pytest.raises(CheckpointError, match="--resume: no checkpoint"):
        run({}, out=str(tmp_path / "empty"), resume=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        run(TINY, out=str(tiny_run))  # never silently overwrites a run
    with pytest.raises(ConfigError, match="--ngf cannot change when resuming"):
        run({"ngf": 16}, out=str(tiny_run), resume=True)
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.json").write_text("{}")  # killed before its first checkpoint
    with pytest.raises(ConfigError, match="stopped before its first checkpoint"):
        run(TINY, out=str(started))


def test_resume_does_not_log_steps_twice(tmp_path: Path) -> None:
    """Killed after logging step 3 but checkpointed at step 2: step 3 is logged once."""
    out = train_tiny(tmp_path / "run", max_steps=3, log_every=1, checkpoint_every=2)
    last = out / "checkpoints" / "last.pt"
    (out / "checkpoints" / "step-2.pt").replace(last)  # as if the run died before step 3's save
    run({"max_steps": 4}, out=str(out), resume=True)
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains(tmp_path: Path, loss: str) -> None:
    out = train_tiny(tmp_path / loss, loss=loss, max_steps=2, d_steps=2, log_every=1)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    assert all(torch.isfinite(torch.tensor([x["loss/d"], x["loss/g"]])).all() for x in lines)


def test_d_steps_consume_a_batch_each(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "k3", d_steps=3, max_steps=1, log_every=1)
    line = json.loads((out / "metrics.jsonl").read_text())
    assert line["step"] == 1  # one generator step ...
    optimizer_d = checkpoint.load(out)["optimizer_d"]["state"]
    assert int(next(iter(optimizer_d.values()))["step"]) == 3  # ... after three D steps


def test_sample_scale_sets_the_grid_size(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", max_steps=1, log_every=1, num_samples=4, sample_scale=1)
    assert Image.open(out / "samples" / "step-1.png").size == (2 * 34 + 2, 2 * 34 + 2)


def test_an_epoch_ends_with_a_sample(tmp_path: Path) -> None:
    # 10000 test images / (batch 1000) = 10 steps per epoch; 2 epochs.
    out = train_tiny(tmp_path / "epochs", batch_size=1000, epochs=2, log_every=5)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-10.png", "step-20.png"]
    assert checkpoint.load(out)["epoch"] == 2


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "bf16", precision="bf16", max_steps=1, log_every=1)
    assert checkpoint.load(out)["generator"]["main.0.weight"].dtype == torch.float32


def test_compiled_training_with_a_gradient_penalty(tmp_path: Path) -> None:
    """--compile: compiled G and D; the penalty's double backward goes through the eager D."""
    out = train_tiny(tmp_path / "compiled", compile=True, loss="wgan-gp", max_steps=2,
                     log_every=1)
    ckpt = checkpoint.load(out)
    assert ckpt["step"] == 2
    assert not any(k.startswith("_orig_mod.") for k in ckpt["generator"])  # unwrapped modules


def test_max_seconds_stops_at_a_logging_step_and_saves(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", epochs=50, max_seconds=0.01, log_every=3)
    ckpt = checkpoint.load(out)
    assert ckpt["step"] == 3  # the first logging step after the budget ran out
    assert (out / "samples" / "step-3.png").is_file()


@pytest.mark.usefixtures("quick_classifier")
def test_eval_every_logs_scores_and_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", max_steps=4, eval_every=2, eval_images=64)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/fid" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["eval/fid"] > 0 and 0 <= r["eval/recall"] <= 1 for r in evals)
    best = checkpoint.load(out / "checkpoints" / "best.pt")
    assert best["best_fid"] == pytest.approx(min(r["eval/fid"] for r in evals), rel=1e-5)
    assert best["step"] == min(evals, key=lambda r: r["eval/fid"])["step"]


def test_a_batch_larger_than_the_data_suggests_a_batch_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="8 images are too few for batch size 128 .*: use "
                                          "--batch-size 8 or less"):
        train_on_flat_folder(tmp_path, max_steps=1, batch_size=128)


def test_eval_every_on_data_without_classes_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--eval-every .* no class sub-folders"):
        train_on_flat_folder(tmp_path, max_steps=2, eval_every=1)
    assert not (tmp_path / "run" / "checkpoints").exists()  # not a step was trained


def test_a_run_from_before_ema_resumes_without_it(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "old", max_steps=2, ema_decay=0.0)
    ckpt = checkpoint.load(out)
    del ckpt["config"]["ema_decay"]  # as written by a version without EMA
    checkpoint.atomic_save(ckpt, out / "checkpoints" / "last.pt")
    run({"max_steps": 3}, out=str(out), resume=True)
    resumed = checkpoint.load(out)
    assert resumed["step"] == 3 and "generator_ema" not in resumed


def test_steps_driven_by_hand_are_the_steps_fit_takes(tmp_path: Path) -> None:
    """The benches time `train_step` over `epoch_batches` (then `sync`); three steps driven so
    leave G, D and the EMA where `gan train --max-steps 3` leaves them, bit for bit."""
    fitted = _weights(train_tiny(tmp_path / "fit", max_steps=3))
    device = torch.device("cpu")
    trainer = Trainer(TrainConfig(**TINY, max_steps=3, out=str(tmp_path / "hand")), device,
                      distributed.init(device))
    try:
        groups = trainer.epoch_batches(0)  # (steps, d_steps, batch) image indices
        assert groups.shape == (trainer.steps_per_epoch, 1, TINY["batch_size"])
        for group in groups[:3]:
            trainer.train_step(group)
        trainer.sync()
        by_hand = _named(checkpoint.build(trainer))  # what a checkpoint of it would hold
    finally:
        trainer.close()
    assert fitted.keys() == by_hand.keys()
    differ = [k for k in fitted if not torch.equal(fitted[k], by_hand[k])]
    assert not differ, differ
