"""Each loss's value on hand-computed inputs, and the direction its gradients push."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from train.config import LOSSES
from train.losses import gradient_penalty, make_loss

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sp(x: float) -> float:  # softplus, by hand
    return math.log1p(math.exp(x))


EXPECTED_D = {
    "ns": (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2,
    "minimax": (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2,
    "lsgan": 0.5 * (((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + (0.5**2 + 3**2) / 2),
    "wgan": (0.5 - 3) / 2 - (2 - 1) / 2,
    "wgan-gp": (0.5 - 3) / 2 - (2 - 1) / 2,
    "hinge": (max(0, 1 - 2) + max(0, 1 + 1)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3)) / 2,
    "dragan": (sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2,
}
EXPECTED_G = {
    "ns": (sp(-0.5) + sp(3)) / 2,
    "minimax": -(sp(0.5) + sp(-3)) / 2,
    "lsgan": 0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2,
    "wgan": -(0.5 - 3) / 2,
    "wgan-gp": -(0.5 - 3) / 2,
    "hinge": -(0.5 - 3) / 2,
    "dragan": (sp(-0.5) + sp(3)) / 2,
}


@pytest.mark.parametrize("name", LOSSES)
def test_values_by_hand(name: str) -> None:
    loss = make_loss(name)
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(EXPECTED_D[name], rel=1e-6)
    assert loss.g_loss(FAKE).item() == pytest.approx(EXPECTED_G[name], rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_gradient_directions(name: str) -> None:
    """D is pushed to raise real logits and lower fake ones; G to raise fake logits."""
    loss = make_loss(name)
    # At 0.5, not 0: LSGAN's fake target is 0, where its D gradient would vanish.
    real = torch.full((4,), 0.5, requires_grad=True)
    fake = torch.full((4,), 0.5, requires_grad=True)
    loss.d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # descent raises real, lowers fake
    fake_g = torch.full((4,), 0.5, requires_grad=True)
    loss.g_loss(fake_g).backward()
    assert (fake_g.grad < 0).all()  # descent raises D(G(z))


def test_minimax_saturates_where_ns_does_not() -> None:
    """With D confident (l_f very negative) minimax's G gradient vanishes, ns's does not."""
    grads = {}
    for name in ("minimax", "ns"):
        fake = torch.full((1,), -10.0, requires_grad=True)
        make_loss(name).g_loss(fake).backward()
        grads[name] = fake.grad.abs().item()
    assert grads["minimax"] < 1e-4 < 0.5 < grads["ns"]


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient has norm ||w|| everywhere."""

    def __init__(self, norm: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((1, 1, 2, 2), norm / 2))  # ||w|| = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("norm", [0.0, 1.0, 3.0])
def test_gradient_penalty_value(norm: float) -> None:
    gp = gradient_penalty(Linear(norm), torch.randn(5, 1, 2, 2))
    assert gp.item() == pytest.approx((norm - 1) ** 2, abs=1e-5)


@pytest.mark.parametrize("name", ["wgan-gp", "dragan"])
def test_penalties_reach_discriminator_weights(name: str) -> None:
    d = Linear(3.0)
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2)
    pen = make_loss(name, gp_weight=10.0).penalty(d, real, fake, rng)
    assert pen.item() == pytest.approx(10.0 * (3 - 1) ** 2, rel=1e-4)
    pen.backward()
    assert (d.w.grad > 0).all()  # descent shrinks ||w|| towards 1


def test_wgan_clips_weights() -> None:
    d = Linear(4.0)
    make_loss("wgan", clip_value=0.01).after_d_step(d)
    assert d.w.abs().max().item() == pytest.approx(0.01)


def test_logistic_losses_report_probabilities() -> None:
    assert make_loss("ns").score(torch.zeros(3)).item() == pytest.approx(0.5)
    assert make_loss("wgan").score(torch.full((3,), 7.0)).item() == pytest.approx(7.0)


def test_unknown_loss() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("bce")
