"""Loss terms beside the GAN loss, for conditional runs (both on by default there):

- AC-GAN's class loss (Odena et al. 2017): D's class head (train.model) is trained by
  cross-entropy on real images only, and G's loss adds the cross-entropy of its fakes against
  the classes asked for, so each class's images look like that class to D.
- MSGAN's mode-seeking term (Mao et al. 2019): G's loss grows when two latents of one class
  give nearly the same image, so G cannot ignore z within a class.

Without them the conditional default drew one garment per class (recall 0.000); measured in
docs/benchmarks.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODE_SEEKING_EPS = 1e-5  # Mao et al.'s epsilon: keeps the term finite for identical pairs


def mode_seeking(fake: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None
                 ) -> torch.Tensor:
    """The mode-seeking term of MSGAN (Mao et al. 2019), for G to minimise: the mean over pairs
    of fakes of one class of 1 / (d_img / d_z + eps), d_img = mean |G(z1) - G(z2)| of the pair,
    d_z = mean |z1 - z2|. A generator that ignores z within a class (one garment for every z)
    has d_img ~ 0, which makes the term large; it rewards images that move when z moves.

    fake (B, C, H, W), z (B, nz), labels (B,) or None. Pairs are neighbours after a stable sort
    by label, B // 2 of them; the few that straddle two classes are left out. Unconditional:
    neighbours as they come."""
    b = fake.shape[0] - fake.shape[0] % 2
    order = (torch.argsort(labels, stable=True) if labels is not None
             else torch.arange(fake.shape[0], device=fake.device))
    first, second = order[0:b:2], order[1:b:2]  # (B // 2,) each
    d_img = (fake[first] - fake[second]).float().abs().flatten(1).mean(dim=1)
    d_z = (z[first] - z[second]).float().abs().flatten(1).mean(dim=1)
    per_pair = 1.0 / (d_img / d_z + MODE_SEEKING_EPS)
    if labels is None:
        return per_pair.mean()
    same = (labels[first] == labels[second]).float()
    return (per_pair * same).sum() / same.sum().clamp(min=1.0)


class ExtraLosses:
    """The weighted terms of one run (a weight of 0 turns a term off)."""

    def __init__(self, class_weight: float, mode_seeking_weight: float) -> None:
        self.class_weight, self.mode_seeking_weight = class_weight, mode_seeking_weight

    def critic(self, d: nn.Module, x: torch.Tensor, labels: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's logits (B,) and, with the class loss on, its class logits (B, classes)."""
        if self.class_weight and labels is not None:
            return d(x, labels, with_classes=True)  # type: ignore[no-any-return]
        return d(x, labels), None

    def classes(self, class_logits: torch.Tensor | None, labels: torch.Tensor | None
                ) -> torch.Tensor | float:
        """The weighted cross-entropy of class logits (B, classes) against labels (B,)."""
        if class_logits is None or labels is None:
            return 0.0
        return self.class_weight * F.cross_entropy(class_logits.float(), labels)

    def diversity(self, fake: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None
                  ) -> torch.Tensor | float:
        """The weighted mode-seeking term of the fakes G made from z (B, nz) for labels."""
        if not self.mode_seeking_weight:
            return 0.0
        return self.mode_seeking_weight * mode_seeking(fake, z, labels)
