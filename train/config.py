"""The training configuration: one typed dataclass, documented field by field.

The CLI only overrides these defaults; every checkpoint carries `asdict(config)` so a model can
be rebuilt (and a run resumed) from the checkpoint alone. No torch import here: `gan --help` stays
fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from gan.choices import check_choices
from gan.errors import UserError

DATASETS = ("fashion-mnist", "mnist", "cifar10", "folder")
LOSSES = ("ns", "minimax", "lsgan", "wgan", "wgan-gp", "hinge", "dragan")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
D_NORMS = ("auto", "batch", "layer", "none")
SPLITS = ("train", "test")
IMAGE_SIZES = (32, 64, 128)  # dcgan's
ARCHS = ("dcgan", "mlp")
MLP_SIZES = (8, 256)  # smallest and largest side of an mlp's images
NATIVE_SIZES = {"fashion-mnist": 28, "mnist": 28, "cifar10": 32}  # built-in datasets' sides


# Fewest images an evaluation scores: below this even precision/recall's k-NN radii are noise.
MIN_EVAL_IMAGES = 10


class ConfigError(UserError):
    """A configuration value that cannot work."""


@dataclass(kw_only=True)
class TrainConfig:
    """Everything that defines a training run."""

    dataset: str = "fashion-mnist"
    """Dataset: fashion-mnist, mnist, cifar10, or folder (your own images under --data-dir)."""
    data_dir: str | None = None
    """Data location. Built-in datasets: torchvision's root folder (downloaded there if missing and
    online); unset means the Debian dataset-fashion-mnist files when present, else
    ~/.cache/dcgan-forge/data. folder: a directory of images (class sub-folders or flat)."""
    split: str = "train"
    """Which split of a built-in dataset to train on: train, or test (small and quick: for smoke
    runs and tests)."""
    arch: str = "dcgan"
    """Architecture: dcgan (convolutional, Radford et al. 2015), or mlp (fully connected, the
    original GAN of Goodfellow et al. 2014: flattened images, Linear layers with LeakyReLU)."""
    image_size: int = 0
    """Side of the square images; 0 means 32 for dcgan and the dataset's native size for mlp
    (28 for (Fashion-)MNIST, 32 for CIFAR-10 and folders). dcgan: 32, 64 or 128, 28 px data
    padded (to 32) or resized; mlp: 8 to 256, resized when not native."""
    channels: int = 0
    """Image channels; 0 means take it from the dataset (1 for (Fashion-)MNIST, 3 for CIFAR-10)."""
    nz: int = 100
    """Size of the latent vector z ~ N(0, I)."""
    ngf: int = 64
    """Generator width: the last hidden layer has ngf channels, each earlier one twice the next."""
    ndf: int = 64
    """Discriminator width: the first layer has ndf channels, each later one twice the previous."""
    mlp_hidden_g: tuple[int, ...] = (256,)
    """mlp only: widths of G's hidden layers, input side first (--mlp-hidden-g 512,256 for two)."""
    mlp_hidden_d: tuple[int, ...] = (128,)
    """mlp only: widths of D's hidden layers, input side first (--mlp-hidden-d 256,128 for two)."""
    mlp_batch_norm: bool = False
    """mlp only: BatchNorm after each hidden layer of G (the tutorials' better-normalisation
    step; the original has none)."""
    loss: str = "ns"
    """GAN loss: ns (non-saturating), minimax, lsgan, wgan (weight clipping), wgan-gp, hinge,
    dragan."""
    d_steps: int = 1
    """Discriminator steps per generator step (k in Goodfellow et al.'s Algorithm 1; 5 is usual
    for wgan and wgan-gp)."""
    d_norm: str = "auto"
    """Discriminator normalisation (never on its input layer): batch, layer, none, or auto (mlp:
    none, as in the original; dcgan: layer for the gradient-penalty losses wgan-gp and dragan,
    whose per-sample penalty BatchNorm would mix, batch otherwise)."""
    spectral_norm: bool = False
    """Spectral normalisation (Miyato et al. 2018) of every weight of D (convolutions, Linear
    layers, a conditional D's projection embedding): each is divided by its largest singular
    value, estimated by one power iteration per forward, so D is about 1-Lipschitz per layer.
    Usually paired with --d-norm none and --loss hinge (SN-GAN)."""
    gp_weight: float = 10.0
    """Weight of the gradient penalty of wgan-gp and dragan."""
    clip_value: float = 0.01
    """wgan only: the discriminator's weights are clipped to [-clip_value, clip_value]."""
    lr_g: float = 4e-4
    """Adam learning rate of the generator (DCGAN's paper: 2e-4; 4e-4 for both G and D scored
    FID 21.7 and 35.1 (two seeds) against 46.3 after 300 s on Fashion-MNIST: docs/quality.md)."""
    lr_d: float = 4e-4
    """Adam learning rate of the discriminator (a different one from --lr-g gives the two
    time-scale update rule, TTUR)."""
    beta1: float = 0.5
    """Adam beta1 (DCGAN uses 0.5, not the usual 0.9)."""
    beta2: float = 0.999
    """Adam beta2."""
    batch_size: int = 128
    """Images per step (per process under torchrun)."""
    epochs: int = 5
    """Passes over the dataset."""
    max_steps: int = 0
    """Stop after this many generator steps (0: no limit; for smoke runs and benchmarks)."""
    max_seconds: float = 0.0
    """Stop after this much training time in seconds, checked at each logging step (0: no
    limit): a fixed wall-clock budget, for comparisons and for shared machines."""
    precision: str = "auto"
    """Autocast precision: fp32, bf16, fp16, or auto (bf16 on a CPU with native bf16 instructions;
    fp32 elsewhere: emulated bf16 is many times slower, and on a GPU these small models are
    launch-bound, so bf16's casts cost more than they save)."""
    channels_last: bool = True
    """Use the channels_last memory format (faster convolutions on CPU and tensor cores)."""
    compile: bool = False
    """torch.compile G and D (inductor). Off by default: for these small models it does not pay
    everywhere (see docs/benchmarks.md); try it for long runs on your hardware."""
    device: str = "auto"
    """Training device: auto (cuda if available), cpu or cuda."""
    seed: int = 0
    """Seed for weights, data order, latents and the fixed sample noise."""
    out: str = "runs/default"
    """Run directory: config.json, checkpoints/, samples/, TensorBoard events, metrics.jsonl."""
    log_every: int = 50
    """Log losses every this many generator steps (the only host syncs of the loop)."""
    checkpoint_every: int = 500
    """Write checkpoints/step-<N>.pt every this many generator steps (last.pt is kept too)."""
    keep_checkpoints: int = 3
    """How many periodic step-<N>.pt checkpoints to keep (the newest ones)."""
    num_samples: int = 64
    """Size of the fixed noise batch drawn into samples/step-<N>.png to watch progress
    (conditional runs round it up to whole rows of one image per class)."""
    sample_scale: int = 0
    """Upscale the sample grids by this whole factor (nearest neighbour, so pixels stay exact);
    0: the smallest that makes a grid at least 512 px wide."""
    conditional: bool = False
    """Train a class-conditional GAN: G joins a label embedding to z, D is a projection
    discriminator. Needs labelled data (the built-in datasets, or a folder of class folders)."""
    label_dim: int = 50
    """Conditional only: size of G's learned label embedding joined with z."""
    class_weight: float | None = None
    """Conditional only: weight of the auxiliary classification loss (AC-GAN, Odena et al.
    2017). D gets a class head on its last hidden features, trained by cross-entropy on real
    images only; G's loss adds the cross-entropy of its fakes against the classes asked for.
    0 turns it off (and D has no head); unset: 2.0 for --conditional runs (1.0 scored class
    accuracy 0.95 at the default length, 2.0 scored 0.98 with a lower FID)."""
    mode_seeking: float | None = None
    """Weight of the mode-seeking term in G's loss (MSGAN, Mao et al. 2019): it grows when two
    latents of one class give nearly the same image, so G cannot ignore z. 0 turns it off;
    unset: 1.0 for --conditional runs (without it their G drew one garment per class:
    docs/benchmarks.md), 0 otherwise."""
    ema_decay: float = 0.999
    """Keep an exponential moving average of G's weights with this decay (0 turns it off);
    warmed up as min(decay, (1 + t) / (10 + t)) at step t. Samples, eval and export use it by
    default; its BatchNorm statistics are recomputed for the averaged weights before each use."""
    ema_start: int = 0
    """Generator steps before the EMA starts averaging: until then it copies G, and the warm-up
    of --ema-decay counts from this step (0: from the first step). Skips the random early
    weights in short runs."""
    eval_every: int = 0
    """Every this many generator steps, compute FID/KID/precision/recall (classifier features) on
    --eval-images images, log them, and keep checkpoints/best.pt by FID (0: never)."""
    eval_images: int = 2000
    """Generated (and real test) images per evaluation during training."""

    def __post_init__(self) -> None:
        # JSON and the CLI give lists; a tuple compares equal to itself on --resume
        self.mlp_hidden_g, self.mlp_hidden_d = tuple(self.mlp_hidden_g), tuple(self.mlp_hidden_d)
        if self.image_size == 0:
            native = self.arch == "mlp" and self.dataset in NATIVE_SIZES
            self.image_size = NATIVE_SIZES[self.dataset] if native else 32
        # Unset loss-term weights take the conditional default here, so a run's saved config
        # holds the numbers it trained with: a later default cannot change a resumed run.
        if self.class_weight is None:
            self.class_weight = 2.0 if self.conditional else 0.0
        if self.mode_seeking is None:
            self.mode_seeking = 1.0 if self.conditional else 0.0
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError with one clear line for the first value that cannot work."""
        check_choices(self, {"dataset": DATASETS, "loss": LOSSES, "precision": PRECISIONS,
                             "device": DEVICES, "d_norm": D_NORMS, "split": SPLITS,
                             "arch": ARCHS}, ConfigError)
        low, high = MLP_SIZES
        if self.arch == "mlp" and not low <= self.image_size <= high:
            raise ConfigError(f"image size {self.image_size} is not supported by mlp: use "
                              f"{low} to {high}")
        if self.arch == "dcgan" and self.image_size not in IMAGE_SIZES:
            raise ConfigError(f"image size {self.image_size} is not supported by dcgan: use one "
                              f"of {', '.join(map(str, IMAGE_SIZES))} (a power of two), or "
                              "--arch mlp")
        for name in ("mlp_hidden_g", "mlp_hidden_d"):
            widths = getattr(self, name)
            if not widths or min(widths) < 1:
                raise ConfigError(f"{name} needs at least one hidden width, each at least 1, "
                                  f"got {widths}")
        positive = ("nz", "ngf", "ndf", "d_steps", "batch_size", "epochs", "log_every",
                    "checkpoint_every", "keep_checkpoints", "num_samples", "label_dim",
                    "eval_images")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if min(self.max_steps, self.channels, self.max_seconds, self.sample_scale) < 0:
            raise ConfigError("max_steps, max_seconds, channels and sample_scale must not be "
                              "negative")
        if not (self.lr_g > 0 and self.lr_d > 0):
            raise ConfigError(f"learning rates must be positive, got lr_g={self.lr_g}, "
                              f"lr_d={self.lr_d}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(f"Adam betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.gp_weight < 0 or self.clip_value <= 0:
            raise ConfigError("gp_weight must not be negative and clip_value must be positive")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 turns EMA off), got "
                              f"{self.ema_decay}")
        for name in ("mode_seeking", "class_weight"):
            weight = getattr(self, name)
            if weight is not None and not 0 <= weight < math.inf:
                raise ConfigError(f"{name} must be a weight >= 0 (0 turns it off), got {weight}")
        if self.class_weight and not self.conditional:
            raise ConfigError("class_weight needs --conditional: the class head learns the "
                              "labels of a conditional run")
        if self.mode_seeking and self.batch_size < 2:
            raise ConfigError("mode_seeking pairs the fakes of one batch: it needs batch_size 2 "
                              "or more (or --mode-seeking 0)")
        if self.eval_every < 0 or self.ema_start < 0:
            raise ConfigError(f"eval_every and ema_start must not be negative, got "
                              f"{self.eval_every} and {self.ema_start}")
        if self.eval_images < MIN_EVAL_IMAGES:
            raise ConfigError(f"eval_images must be at least {MIN_EVAL_IMAGES}, got "
                              f"{self.eval_images}")
        if self.dataset == "folder" and not self.data_dir:
            raise ConfigError("dataset 'folder' needs --data-dir DIR (a directory of images)")

    @property
    def resolved_d_norm(self) -> str:
        if self.d_norm != "auto":
            return self.d_norm
        if self.arch == "mlp":
            return "none"
        return "layer" if self.loss in ("wgan-gp", "dragan") else "batch"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: tuples become lists, so a checkpoint's config equals its JSON copy
        (config.json, the ONNX train_config) value for value."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict()` output; unknown keys (from a newer version) are an error."""
        # A run saved before EMA (or the mode-seeking term, or D's class head) existed had none:
        # resuming it must not start averaging (or change its losses and networks).
        data = {"ema_decay": 0.0, "mode_seeking": 0.0, "class_weight": 0.0, **data}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config has unknown fields {unknown}: written by a newer version?")
        return cls(**data)
