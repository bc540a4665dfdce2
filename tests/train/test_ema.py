"""The EMA generator: the averaging rule, its warm-up, recomputed BatchNorm statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import train_tiny
from train import checkpoint
from train.ema import GeneratorEMA
from train.model import Generator, init_weights


def _generator(seed: int = 0, classes: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(16, 8, 1, 32, num_classes=classes)
    g.apply(init_weights)
    return g


def test_update_follows_the_warm_up_rule() -> None:
    g = _generator()
    ema = GeneratorEMA(g, decay=0.999)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    assert ema.beta() == pytest.approx(0.1)  # t = 0: (1 + 0) / (10 + 0)
    ema.update(g)
    for old, new, live in zip(before, ema.model.parameters(), g.parameters(), strict=True):
        torch.testing.assert_close(new, 0.1 * old + 0.9 * live)
    ema.updates = 100_000
    assert ema.beta() == 0.999  # capped at the decay once warmed up


def test_calibration_standardises_the_averaged_generators_activations() -> None:
    """Recomputed statistics describe the averaged weights: the first BatchNorm then sees
    zero-mean, unit-variance inputs in eval mode, which the live G's statistics would not give."""
    g = _generator()
    ema = GeneratorEMA(g, decay=0.5)
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(3.0)  # live weights far from the average
    ema.update(g)
    ema.update(g)
    bn = ema.calibrate(batches=8, batch_size=256).main[1]
    with torch.no_grad():
        pre = ema.model.main[0](torch.randn(2048, 16)[:, :, None, None])  # (B, w0, 4, 4)
    mean = pre.mean(dim=(0, 2, 3))
    var = pre.var(dim=(0, 2, 3))
    torch.testing.assert_close(bn.running_mean, mean, atol=0.05 * var.sqrt().max().item(),
                               rtol=0)
    torch.testing.assert_close(bn.running_var, var, rtol=0.1, atol=0)


def test_calibration_is_pure_and_leaves_the_global_rng_alone() -> None:
    ema = GeneratorEMA(_generator(classes=3), decay=0.9)
    rng = torch.get_rng_state()
    first = {k: v.clone() for k, v in ema.calibrate().state_dict().items()}
    assert torch.equal(torch.get_rng_state(), rng)
    ema.calibrated_at = -1  # force a second calibration of the same weights
    second = ema.calibrate().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not ema.model.training


def test_checkpoint_keeps_ema_and_no_ema_turns_it_off(tmp_path: Path, tiny_run: Path) -> None:
    with_ema = checkpoint.load(tiny_run)
    assert with_ema["generator_ema"]["decay"] == 0.999
    ema_g = checkpoint.build_generator(with_ema)
    raw_g = checkpoint.build_generator(with_ema, ema=False)
    z = torch.randn(4, 100)
    with torch.no_grad():
        assert not torch.equal(ema_g(z), raw_g(z))  # two different generators
    off = checkpoint.load(train_tiny(tmp_path / "off", max_steps=2, ema_decay=0.0))
    assert "generator_ema" not in off and checkpoint.generator_kind(off) == "raw"
