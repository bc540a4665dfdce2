"""Either architecture from a TrainConfig: DCGAN (train.model) or the fully connected GAN
(train.mlp, `--arch mlp`). Both generators have nz and num_classes and map z (B, nz) [, labels
(B,)] to images (B, C, S, S); both discriminators map images [, labels] to logits (B,)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from train.config import TrainConfig
from train.mlp import MLPDiscriminator, MLPGenerator
from train.model import Discriminator, Generator

AnyGenerator = Generator | MLPGenerator
AnyDiscriminator = Discriminator | MLPDiscriminator


def build_generator(cfg: TrainConfig, num_classes: int = 0) -> AnyGenerator:
    """cfg's generator (cfg.channels resolved), with PyTorch's default init (the trainer then
    applies train.model.init_weights)."""
    if cfg.arch == "mlp":
        return MLPGenerator(cfg.nz, cfg.mlp_hidden_g, cfg.channels, cfg.image_size,
                            num_classes=num_classes, label_dim=cfg.label_dim,
                            batch_norm=cfg.mlp_batch_norm)
    return Generator(cfg.nz, cfg.ngf, cfg.channels, cfg.image_size, num_classes=num_classes,
                     label_dim=cfg.label_dim)


def build_discriminator(cfg: TrainConfig, num_classes: int = 0) -> AnyDiscriminator:
    """cfg's discriminator (cfg.channels resolved), with PyTorch's default init; with
    cfg.spectral_norm its weights are spectrally normalised (see `spectrally_normalised`)."""
    d: AnyDiscriminator
    head = bool(cfg.class_weight)  # AC-GAN's class head, conditional runs only
    if cfg.arch == "mlp":
        d = MLPDiscriminator(cfg.mlp_hidden_d, cfg.channels, cfg.image_size,
                             norm=cfg.resolved_d_norm, num_classes=num_classes, class_head=head)
    else:
        d = Discriminator(cfg.ndf, cfg.channels, cfg.image_size, norm=cfg.resolved_d_norm,
                          num_classes=num_classes, class_head=head)
    return spectrally_normalised(d) if cfg.spectral_norm else d


SN_LAYERS = (nn.Conv2d, nn.Linear, nn.Embedding)


def spectrally_normalised(d: AnyDiscriminator) -> AnyDiscriminator:
    """D with every convolution, Linear and embedding weight parametrised as W / sigma(W)
    (torch.nn.utils.parametrizations.spectral_norm: one power iteration per training forward,
    the estimate's vectors kept as buffers, so checkpoints carry them). The raw weight is
    `parametrizations.weight.original`, which train.model.init_weights initialises."""
    for module in list(d.modules()):
        if isinstance(module, SN_LAYERS):
            spectral_norm(module)
    return d
