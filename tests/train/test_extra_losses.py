"""The loss terms beside the GAN loss: AC-GAN's class loss (D's class head) and MSGAN's
mode-seeking term, both on by default for conditional runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import train_tiny
from train import checkpoint
from train.config import ConfigError, TrainConfig
from train.extra_losses import MODE_SEEKING_EPS, ExtraLosses, mode_seeking
from train.mlp import MLPDiscriminator
from train.model import Discriminator, init_weights


def test_mode_seeking_by_hand_and_its_gradient_pushes_a_pair_apart() -> None:
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # d_z = mean |z1 - z2| = 1
    fake = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5)]).requires_grad_(True)
    term = mode_seeking(fake, z, torch.tensor([3, 3]))  # d_img = 0.5: 1 / (0.5 / 1 + eps)
    torch.testing.assert_close(term, torch.tensor(1.0 / (0.5 + MODE_SEEKING_EPS)))
    torch.testing.assert_close(mode_seeking(fake, z, None), term)  # unconditional: as they come
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


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_the_class_head_leaves_the_logits_alone_and_adds_class_logits(arch: str) -> None:
    torch.manual_seed(0)
    make = ((lambda head: Discriminator(8, 1, 32, num_classes=10, class_head=head))
            if arch == "dcgan" else
            (lambda head: MLPDiscriminator((16,), 1, 32, num_classes=10, class_head=head)))
    with_head, without = make(True).eval(), make(False).eval()
    with_head.apply(init_weights)
    without.load_state_dict({k: v for k, v in with_head.state_dict().items()
                             if not k.startswith("classify.")})
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([0, 4, 9])
    with torch.no_grad():
        logits, classes = with_head(x, y, with_classes=True)
        torch.testing.assert_close(logits, without(x, y))
        torch.testing.assert_close(with_head(x, y), logits)
    assert classes.shape == (3, 10)
    with pytest.raises(ValueError, match="no class head"):
        without(x, y, with_classes=True)


def test_the_class_loss_is_the_weighted_cross_entropy_and_off_at_zero() -> None:
    torch.manual_seed(0)
    d = Discriminator(8, 1, 32, num_classes=10, class_head=True).eval()
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([1, 2, 3, 1])
    on, off = ExtraLosses(2.0, 0.0), ExtraLosses(0.0, 0.0)
    logits, classes = on.critic(d, x, y)
    assert classes is not None and classes.shape == (4, 10)
    torch.testing.assert_close(on.classes(classes, y), 2.0 * F.cross_entropy(classes, y))
    assert off.critic(d, x, y)[1] is None and off.classes(None, y) == 0.0
    assert off.diversity(torch.zeros(4, 1, 2, 2), torch.randn(4, 3), y) == 0.0


def test_conditional_runs_get_both_terms_unless_set() -> None:
    plain, conditional = TrainConfig(), TrainConfig(conditional=True)
    assert (plain.class_weight, plain.mode_seeking) == (0.0, 0.0)
    assert (conditional.class_weight, conditional.mode_seeking) == (2.0, 1.0)
    saved = conditional.to_dict()  # what config.json and checkpoints hold: the numbers
    assert (saved["class_weight"], saved["mode_seeking"]) == (2.0, 1.0)
    off = TrainConfig(conditional=True, class_weight=0.0, mode_seeking=0.0)
    assert (off.class_weight, off.mode_seeking) == (0.0, 0.0)
    assert TrainConfig(mode_seeking=0.5).mode_seeking == 0.5  # unconditional too
    # a run saved before the terms existed resumes without them
    old = {k: v for k, v in conditional.to_dict().items()
           if k not in ("class_weight", "mode_seeking")}
    resumed = TrainConfig.from_dict(old)
    assert (resumed.class_weight, resumed.mode_seeking) == (0.0, 0.0)
    for name in ("mode_seeking", "class_weight"):
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ConfigError, match=f"{name} must be a weight >= 0"):
                TrainConfig(conditional=True, **{name: bad})
    with pytest.raises(ConfigError, match="class_weight needs --conditional"):
        TrainConfig(class_weight=1.0)
    with pytest.raises(ConfigError, match="needs batch_size 2 or more"):
        TrainConfig(conditional=True, batch_size=1)  # no pairs for the mode-seeking term


@pytest.mark.fashion_mnist
def test_a_conditional_run_trains_and_keeps_the_class_head(tmp_path: Path) -> None:
    on = checkpoint.load(train_tiny(tmp_path / "on", conditional=True, max_steps=2))
    assert on["discriminator"]["classify.weight"].shape == (10, 4 * 8)  # 4ndf features
    off_dir = train_tiny(tmp_path / "off", conditional=True, max_steps=2, class_weight=0.0)
    assert not any(k.startswith("classify.") for k in checkpoint.load(off_dir)["discriminator"])
    train_tiny(off_dir, resume=True, max_steps=3)  # a headless D resumes as it was saved
    assert checkpoint.load(off_dir)["step"] == 3


@pytest.mark.fashion_mnist
def test_the_class_loss_reaches_d_through_its_body(tmp_path: Path) -> None:
    """One step from one seed at two class weights: D's convolutions (not only its head) move
    differently, so the class loss is in D's update."""
    runs = {w: checkpoint.load(train_tiny(tmp_path / str(w), conditional=True, max_steps=1,
                                          class_weight=w))["discriminator"] for w in (1.0, 2.0)}
    body = [k for k in runs[1.0] if k.startswith("main.") and k.endswith("weight")]
    assert any(not torch.equal(runs[1.0][k], runs[2.0][k]) for k in body)
