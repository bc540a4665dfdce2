"""DCGAN generator and discriminator (Radford et al. 2015), for square images of 32, 64 or 128 px.

The layer plan is one rule for every size. With L = log2(image_size) - 1 transposed convolutions,
G maps z (B, nz, 1, 1) through a 4x4 first block and L - 1 stride-2 upsamplings:

    nz -> ngf * 2^(L-2) -> ... -> 2 ngf -> ngf -> C          (32 px: nz -> 4ngf -> 2ngf -> ngf -> C)

and D mirrors it: C -> ndf -> 2 ndf -> ... -> ndf * 2^(L-2) -> 1 logit. At 64 px with
ngf = ndf = 64 this is exactly the PyTorch DCGAN tutorial; 128 px adds one block on each side.

Class-conditional models (num_classes > 0, Mirza & Osindero 2014): G joins a learned label
embedding to z (so the first block sees nz + label_dim channels), and D is a projection
discriminator (Miyato & Koyama 2018): logit = last_conv(phi(x)) + <embed(y), sum_hw phi(x)>.
Projection was chosen over label maps concatenated to D's input because it adds one small table
instead of widening every input, it does not change the unconditional path at all, and it is the
form that held up best in the cGAN comparisons of that paper.
With a class head (class_head=True, the conditional default) D also returns class logits from
its last hidden features, mean-pooled over positions (the MLP's last hidden layer as it is): the
auxiliary classifier of AC-GAN (Odena et al. 2017), trained on real images only; the trainer adds
its cross-entropy to both players' losses. --spectral-norm normalises the head too.

The fully connected nets of `--arch mlp` are in train.mlp; train.nets builds either from a
TrainConfig.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils import parametrize

from train.config import IMAGE_SIZES
from train.gemm_conv import GemmConv2d, GemmConvTranspose2d


def num_layers(image_size: int) -> int:
    """Number of (transposed) convolutions for `image_size`; rejects unsupported sizes."""
    if image_size not in IMAGE_SIZES:
        sizes = ", ".join(map(str, IMAGE_SIZES))
        raise ValueError(f"image size {image_size} is not supported: use one of {sizes}")
    return int(math.log2(image_size)) - 1


class Generator(nn.Module):
    """z (B, nz) or (B, nz, 1, 1) [, labels (B,) int64] -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, nz: int, ngf: int, channels: int, image_size: int,
                 num_classes: int = 0, label_dim: int = 50) -> None:
        super().__init__()
        self.nz, self.num_classes = nz, num_classes
        n = num_layers(image_size)
        widths = [ngf * 2 ** (n - 2 - i) for i in range(n - 1)]  # e.g. [4ngf, 2ngf, ngf]
        # a conditional G reads [z, embed(label)]: the label embedding is learned, N(0, 1) at init
        self.embed = nn.Embedding(num_classes, label_dim) if num_classes else None
        c_in0 = nz + (label_dim if num_classes else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(c_in0, widths[0], 4, 1, 0, bias=False),  # (B, w0, 4, 4)
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in pairwise(widths):  # each doubles H and W
            layers += [GemmConvTranspose2d(c_in, c_out),
                       nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(with_labels(z, self.embed, labels)[:, :, None, None])


def with_labels(z: torch.Tensor, embed: nn.Embedding | None, labels: torch.Tensor | None
                ) -> torch.Tensor:
    """A generator's input: z (B, nz) or (B, nz, 1, 1) -> (B, nz), joined with embed(labels)
    (B, label_dim) for a conditional generator (embed not None)."""
    if z.dim() == 4:
        z = z.flatten(1)  # (B, nz, 1, 1) -> (B, nz)
    if embed is None:
        return z
    if labels is None:
        raise ValueError("this generator is conditional: pass labels (B,) int64")
    return torch.cat([z, embed(labels).to(z.dtype)], dim=1)  # (B, nz + label_dim)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample normalisation: gradient penalties stay per-sample
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown discriminator norm {kind!r}: use batch, layer or none")


class Discriminator(nn.Module):
    """images (B, C, S, S) [, labels (B,)] -> logits (B,): no final activation, the loss chooses
    its own. Conditional: a projection discriminator (see the module docstring)."""

    def __init__(self, ndf: int, channels: int, image_size: int, norm: str = "batch",
                 num_classes: int = 0, class_head: bool = False) -> None:
        super().__init__()
        n = num_layers(image_size)
        widths = [ndf * 2**i for i in range(n - 1)]  # e.g. [ndf, 2ndf, 4ndf]
        layers: list[nn.Module] = [
            nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False),  # no norm on the input layer
            nn.LeakyReLU(0.2, True),
        ]
        for c_in, c_out in pairwise(widths):  # each halves H and W
            layers += [GemmConv2d(c_in, c_out), _norm(norm, c_out),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]  # (B, 1, 1, 1)
        self.main = nn.Sequential(*layers)
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes else None
        if self.embed is not None:  # as small as the last conv's weights: no label bias at init
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.classify = class_head_for(widths[-1], num_classes, class_head)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                with_classes: bool = False) -> Logits:
        """Logits (B,); with_classes: (logits, class logits (B, classes)) from the class head."""
        if self.embed is None:
            return self.main(x).flatten()
        if labels is None:
            raise ValueError("this discriminator is conditional: pass labels (B,) int64")
        phi = self.main[:-1](x)  # (B, 4ndf, 4, 4) at 32 px
        logit = self.main[-1](phi).flatten()  # (B,)
        projection = (self.embed(labels).to(phi.dtype) * phi.sum(dim=(2, 3))).sum(dim=1)
        if not with_classes:
            return logit + projection
        return logit + projection, class_logits(self.classify, phi.mean(dim=(2, 3)))


Logits = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def class_head_for(features: int, num_classes: int, wanted: bool) -> nn.Linear | None:
    """A conditional D's class head (features -> classes), or None without one."""
    return nn.Linear(features, num_classes) if num_classes and wanted else None


def class_logits(head: nn.Linear | None, features: torch.Tensor) -> torch.Tensor:
    """The class head on D's features (B, F) -> (B, classes); only called when asked for."""
    if head is None:
        raise ValueError("this discriminator has no class head (--class-weight 0)")
    return head(features)  # type: ignore[no-any-return]


def init_weights(module: nn.Module) -> None:
    """DCGAN init, for both architectures: convolution and Linear weights N(0, 0.02), their
    biases 0; norm weights N(1, 0.02) and biases 0. (Label embeddings keep their own init.)
    A spectrally normalised weight (--spectral-norm) is initialised through its raw original;
    its power iteration then starts from a random direction, as in Miyato et al."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        weight = module.weight
        if parametrize.is_parametrized(module, "weight"):
            weight = module.parametrizations["weight"].original  # type: ignore[index, union-attr]
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
