"""The GAN losses of "Are GANs Created Equal?" (Lucic et al. 2018), plus hinge.

The discriminator always returns raw logits l = D(x) (no Sigmoid); each loss applies its own
link, so the logistic losses use the numerically stable softplus form:
    log sigmoid(l) = -softplus(-l),   log(1 - sigmoid(l)) = -softplus(l).
All losses are means over the batch. Real logits are l_r = D(x), fake ones l_f = D(G(z)).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# The discriminator as a function of images: D itself, or a conditional D with its labels bound.
Critic = Callable[[torch.Tensor], torch.Tensor]


def gradient_penalty(d: Critic, x: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x D(x)||_2 - 1)^2] at the points x (B, C, H, W), differentiable in D's weights."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    return (grad.flatten(1).float().norm(2, dim=1) - 1.0).pow(2).mean()


class GanLoss(ABC):
    """Interface: d_loss and g_loss from logits; an optional penalty and post-step hook."""

    name = ""

    @abstractmethod
    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss from real and fake logits (B,)."""

    @abstractmethod
    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss from fake logits (B,)."""

    def penalty(self, d: Critic, real: torch.Tensor, fake: torch.Tensor,
                rng: torch.Generator) -> torch.Tensor | None:
        """An extra discriminator term (gradient penalties); None when there is none."""
        return None

    def after_d_step(self, d: nn.Module) -> None:  # noqa: B027 - a hook, empty by default
        """Called after each discriminator update (WGAN's weight clipping)."""

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """What to log as D(x) and D(G(z)): a probability for the logistic losses, else raw."""
        return logits.float().mean()


class NonSaturating(GanLoss):
    """D: -log s(l_r) - log(1 - s(l_f)) = softplus(-l_r) + softplus(l_f);
    G: -log s(l_f) = softplus(-l_f)  (Goodfellow et al.'s non-saturating trick)."""

    name = "ns"

    def d_loss(self, real, fake):
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake):
        return F.softplus(-fake).mean()

    def score(self, logits):
        return torch.sigmoid(logits.float()).mean()


class Minimax(NonSaturating):
    """D as ns; G minimises log(1 - s(l_f)) = -softplus(l_f): the original, saturating game."""

    name = "minimax"

    def g_loss(self, fake):
        return -F.softplus(fake).mean()


class LeastSquares(GanLoss):
    """LSGAN (Mao et al.), a=0, b=c=1: D: 1/2 (l_r - 1)^2 + 1/2 l_f^2; G: 1/2 (l_f - 1)^2."""

    name = "lsgan"

    def d_loss(self, real, fake):
        return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())

    def g_loss(self, fake):
        return 0.5 * (fake - 1).pow(2).mean()


class Wasserstein(GanLoss):
    """WGAN (Arjovsky et al.): D: l_f - l_r; G: -l_f; D's weights clipped to [-c, c]."""

    name = "wgan"

    def __init__(self, clip_value: float = 0.01) -> None:
        self.clip_value = clip_value

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake):
        return -fake.mean()

    @torch.no_grad()
    def after_d_step(self, d):
        for p in d.parameters():
            p.clamp_(-self.clip_value, self.clip_value)


class WassersteinGP(Wasserstein):
    """WGAN-GP (Gulrajani et al.): WGAN's losses, no clipping, plus
    lambda E[(||grad D(x_hat)||_2 - 1)^2] with x_hat = e x + (1 - e) G(z), e ~ U[0, 1]."""

    name = "wgan-gp"

    def __init__(self, gp_weight: float = 10.0) -> None:
        self.gp_weight = gp_weight

    def after_d_step(self, d):
        return None

    def penalty(self, d, real, fake, rng):
        e = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=rng)
        return self.gp_weight * gradient_penalty(d, e * real + (1 - e) * fake)


class Hinge(GanLoss):
    """Hinge (Lim & Ye; Miyato et al.): D: relu(1 - l_r) + relu(1 + l_f); G: -l_f."""

    name = "hinge"

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()


class Dragan(NonSaturating):
    """DRAGAN (Kodali et al.): ns losses plus lambda E[(||grad D(x_p)||_2 - 1)^2] around the data,
    x_p = x + 0.5 std(x) u, u ~ U[0, 1]."""

    name = "dragan"

    def __init__(self, gp_weight: float = 10.0) -> None:
        self.gp_weight = gp_weight

    def penalty(self, d, real, fake, rng):
        u = torch.rand(real.shape, device=real.device, generator=rng, dtype=real.dtype)
        return self.gp_weight * gradient_penalty(d, real + 0.5 * real.std() * u)


def make_loss(name: str, *, gp_weight: float = 10.0, clip_value: float = 0.01) -> GanLoss:
    """The loss called `name` (see train.config.LOSSES)."""
    losses: dict[str, GanLoss] = {
        "ns": NonSaturating(), "minimax": Minimax(), "lsgan": LeastSquares(),
        "wgan": Wasserstein(clip_value), "wgan-gp": WassersteinGP(gp_weight),
        "hinge": Hinge(), "dragan": Dragan(gp_weight),
    }
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}: use one of {', '.join(losses)}")
    return losses[name]
