"""The recipe levers beyond the losses: spectral normalisation of D and the EMA's start step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import train_tiny
from train import checkpoint
from train.config import ConfigError, TrainConfig
from train.ema import GeneratorEMA
from train.model import Generator, init_weights
from train.nets import build_discriminator


def _largest_singular_values(d: nn.Module) -> list[float]:
    """sigma_max of each convolution's effective weight, as (out, in * k * k)."""
    return [torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
            for m in d.modules() if isinstance(m, nn.Conv2d)]


def test_spectral_norm_makes_each_d_layer_one_lipschitz(tmp_path: Path) -> None:
    """A real run (fp32) with SN-GAN's recipe: D's effective weights have largest singular
    value ~1 (DCGAN's N(0, 0.02) init alone gives ~0.1-0.5), and the checkpoint round-trips."""
    out = train_tiny(tmp_path / "sn", spectral_norm=True, d_norm="none", loss="hinge",
                     max_steps=6, log_every=2, precision="fp32")
    ckpt = checkpoint.load(out)
    assert "main.0.parametrizations.weight.original" in ckpt["discriminator"]
    cfg = checkpoint.config_of(ckpt)
    assert cfg.spectral_norm
    d = build_discriminator(cfg).eval()  # eval: the stored power-iteration vectors, no update
    d.load_state_dict(ckpt["discriminator"])
    for sigma in _largest_singular_values(d):
        assert sigma == pytest.approx(1.0, abs=0.1)
    plain = build_discriminator(TrainConfig(channels=1, ndf=8, d_norm="none"))
    plain.apply(init_weights)
    assert max(_largest_singular_values(plain)) < 0.6
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor([x["loss/d"], x["loss/g"]])).all() for x in lines)


def test_init_weights_reaches_a_spectrally_normalised_weight() -> None:
    d = build_discriminator(TrainConfig(channels=1, ndf=8, spectral_norm=True))
    original = d.main[0].parametrizations.weight.original
    torch.manual_seed(0)
    d.apply(init_weights)
    assert original.std().item() == pytest.approx(0.02, rel=0.3)


def test_conditional_spectral_norm_covers_the_projection_embedding() -> None:
    d = build_discriminator(TrainConfig(channels=1, ndf=8, spectral_norm=True), num_classes=10)
    assert d.embed is not None and hasattr(d.embed, "parametrizations")
    logits = d(torch.randn(4, 1, 32, 32), torch.arange(4))
    assert logits.shape == (4,)


def test_ema_copies_g_until_its_start_then_warms_up_from_there() -> None:
    torch.manual_seed(0)
    g = Generator(16, 8, 1, 32)
    ema = GeneratorEMA(g, decay=0.999, start=2)
    for _ in range(2):
        with torch.no_grad():
            for p in g.parameters():
                p.add_(1.0)
        assert ema.beta() == 0.0
        ema.update(g)
        for avg, live in zip(ema.model.parameters(), g.parameters(), strict=True):
            torch.testing.assert_close(avg, live)  # a copy before the start
    assert ema.beta() == pytest.approx(0.1)  # t = 0 at the start step: (1 + 0) / (10 + 0)


def test_ema_start_reaches_the_run_and_survives_resume(tmp_path: Path) -> None:
    out = train_tiny(tmp_path / "run", ema_start=3, max_steps=2)
    ckpt = checkpoint.load(out)
    assert checkpoint.config_of(ckpt).ema_start == 3
    g, ema = ckpt["generator"], ckpt["generator_ema"]["weights"]
    for name, value in g.items():
        if name.endswith("weight"):
            torch.testing.assert_close(ema[name], value)  # still copying at step 2 < 3
    train_tiny(tmp_path / "run", resume=True, ema_start=3, max_steps=4)
    assert checkpoint.load(out)["generator_ema"]["updates"] == 4


def test_a_negative_ema_start_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ema_start must not be negative"):
        TrainConfig(ema_start=-1)
