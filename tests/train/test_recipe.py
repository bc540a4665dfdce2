"""The recipe levers beyond the losses: spectral normalisation of D, the EMA's start step and
the mode-seeking term of G's loss."""

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
from train.losses import MODE_SEEKING_EPS, mode_seeking
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


def test_mode_seeking_by_hand_and_its_gradient_pushes_a_pair_apart() -> None:
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # d_z = mean |z1 - z2| = 1
    fake = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)]).requires_grad_(True)
    term = mode_seeking(fake, z, torch.tensor([3, 3]))  # d_img = 0.5: 1 / (0.5 / 1 + eps)
    torch.testing.assert_close(term, torch.tensor(1.0 / (0.5 + MODE_SEEKING_EPS)))
    term.backward()
    assert fake.grad is not None  # descending the term moves the two images apart
    assert (fake.grad[0] > 0).all() and (fake.grad[1] < 0).all()


def test_mode_seeking_is_large_when_g_ignores_z_and_skips_pairs_across_classes() -> None:
    torch.manual_seed(0)
    z, labels = torch.randn(6, 4), torch.tensor([1, 0, 1, 0, 1, 0])
    varied = torch.rand(6, 1, 8, 8) * 2 - 1
    per_class = torch.rand(2, 1, 8, 8)[labels]  # one image per class, whatever z is
    assert mode_seeking(per_class, z, labels) > 1e4 > 100 > mode_seeking(varied, z, labels)
    # sorted by label the pairs are (0, 0), (0, 1), (1, 1): the middle one straddles two classes
    # and is left out, so two identical images there change nothing
    straddling = varied.clone()
    order = torch.argsort(labels, stable=True)
    straddling[order[3]] = straddling[order[2]]
    torch.testing.assert_close(mode_seeking(straddling, z, labels),
                               mode_seeking(varied, z, labels))


def test_mode_seeking_is_on_for_conditional_runs_unless_set() -> None:
    assert TrainConfig().resolved_mode_seeking == 0.0
    assert TrainConfig(conditional=True).resolved_mode_seeking == 1.0
    assert TrainConfig(conditional=True, mode_seeking=0.0).resolved_mode_seeking == 0.0
    assert TrainConfig(mode_seeking=0.5).resolved_mode_seeking == 0.5
    # a run saved before the term existed resumes without it
    old = {k: v for k, v in TrainConfig(conditional=True).to_dict().items()
           if k != "mode_seeking"}
    assert TrainConfig.from_dict(old).resolved_mode_seeking == 0.0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="mode_seeking must be a weight >= 0"):
            TrainConfig(mode_seeking=bad)


@pytest.mark.fashion_mnist
def test_mode_seeking_changes_the_generator_step_only(tmp_path: Path) -> None:
    """One step from one seed with and without the term: the D step before it is the same."""
    runs = {w: checkpoint.load(train_tiny(tmp_path / str(w), conditional=True, max_steps=1,
                                          mode_seeking=w))
            for w in (0.0, 1.0)}
    assert runs[1.0]["config"]["mode_seeking"] == 1.0
    for name, value in runs[0.0]["discriminator"].items():
        torch.testing.assert_close(runs[1.0]["discriminator"][name], value)
    g_off, g_on = runs[0.0]["generator"], runs[1.0]["generator"]
    assert any(not torch.equal(g_on[name], value) for name, value in g_off.items())
