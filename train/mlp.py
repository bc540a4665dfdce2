"""The original fully connected GAN (Goodfellow et al. 2014) beside DCGAN, for comparisons.

Images are flattened to P = C * H * W values (784 for Fashion-MNIST at its native 28x28) and
every layer is a Linear with LeakyReLU(0.2):

    G: z (B, nz) -> hidden_g[0] -> ... -> hidden_g[-1] -> P, Tanh -> (B, C, H, W)
    D: x (B, P)  -> hidden_d[0] -> ... -> hidden_d[-1] -> 1 logit

The classic setup is one hidden layer each, 256 in G and 128 in D; longer lists stack deeper
nets. G can put BatchNorm1d after each hidden Linear (the tutorials' "better normalisation"
step, off by default as in the original). D takes the same normalisation choices as DCGAN's
(batch, layer, none); the default for this architecture is none, as in the original.

Conditional models work as DCGAN's do (see train.model): G joins a learned label embedding to z,
and D is a projection discriminator, logit = head(phi(x)) + <embed(y), phi(x)>, with phi(x) the
last hidden layer's activations (B, hidden_d[-1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from train.model import Logits, class_head_for, class_logits, with_labels


def _stack(widths: Sequence[int], norm: str, norm_first: bool) -> list[nn.Module]:
    """Linear -> norm -> LeakyReLU(0.2) for each consecutive pair of `widths`; the first layer
    skips the norm unless `norm_first` (as in DCGAN's D: none right after the input image)."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(pairwise(widths)):
        kind = norm if i or norm_first else "none"
        layers += [nn.Linear(w_in, w_out, bias=kind == "none"), _norm1d(kind, w_out),
                   nn.LeakyReLU(0.2, True)]
    return layers


def _norm1d(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":  # per-sample: gradient penalties stay per-sample
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown discriminator norm {kind!r}: use batch, layer or none")


class MLPGenerator(nn.Module):
    """z (B, nz) or (B, nz, 1, 1) [, labels (B,) int64] -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, nz: int, hidden: Sequence[int], channels: int, image_size: int,
                 num_classes: int = 0, label_dim: int = 50, batch_norm: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("an MLP generator needs at least one hidden layer")
        self.nz, self.num_classes = nz, num_classes
        self.shape = (channels, image_size, image_size)
        self.embed = nn.Embedding(num_classes, label_dim) if num_classes else None
        w_in = nz + (label_dim if num_classes else 0)
        # BatchNorm in G, when on, follows every hidden layer (the first one too: z is no image)
        self.main = nn.Sequential(
            *_stack([w_in, *hidden], "batch" if batch_norm else "none", norm_first=True),
            nn.Linear(hidden[-1], channels * image_size * image_size), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.main(with_labels(z, self.embed, labels))  # (B, P)
        return x.unflatten(1, self.shape)  # (B, C, S, S)


class MLPDiscriminator(nn.Module):
    """images (B, C, S, S) [, labels (B,)] -> logits (B,): no final activation, the loss chooses
    its own. Conditional: a projection discriminator on the last hidden layer."""

    def __init__(self, hidden: Sequence[int], channels: int, image_size: int,
                 norm: str = "none", num_classes: int = 0, class_head: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("an MLP discriminator needs at least one hidden layer")
        pixels = channels * image_size * image_size
        self.body = nn.Sequential(nn.Flatten(), *_stack([pixels, *hidden], norm, norm_first=False))
        self.head = nn.Linear(hidden[-1], 1)
        self.embed = nn.Embedding(num_classes, hidden[-1]) if num_classes else None
        if self.embed is not None:  # as small as the head's weights: no label bias at init
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.classify = class_head_for(hidden[-1], num_classes, class_head)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                with_classes: bool = False) -> Logits:
        """Logits (B,); with_classes: (logits, class logits (B, classes)) from the class head."""
        phi = self.body(x)  # (B, hidden[-1])
        logit = self.head(phi).flatten()  # (B,)
        if self.embed is None:
            return logit
        if labels is None:
            raise ValueError("this discriminator is conditional: pass labels (B,) int64")
        logit = logit + (self.embed(labels).to(phi.dtype) * phi).sum(dim=1)
        return (logit, class_logits(self.classify, phi)) if with_classes else logit
