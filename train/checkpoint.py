"""Checkpoints: one dict of tensors and plain types, written atomically, loadable with
`torch.load(path, weights_only=True)`.

Keys: format, format_version, config (asdict of TrainConfig), class_names, step, epoch,
generator, generator_ema (when EMA is on: weights with recomputed BatchNorm statistics, updates,
decay), discriminator, optimizer_g, optimizer_d, scaler_g, scaler_d, rng (noise: each rank's
latent generator state; torch: the CPU RNG state). A reader needs nothing but this file to
rebuild the generator (`build_generator`) or to resume the run exactly.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from gan.atomic import atomic_write
from gan.errors import UserError
from train.config import TrainConfig
from train.model import Generator

log = logging.getLogger(__name__)

FORMAT = "dcgan-forge/checkpoint"
FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"step-(\d+)\.pt$")


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or not one of ours."""


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename: never a torn checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


def resolve(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run directory meaning its checkpoints/last.pt."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}: train first, or give a .pt file or run dir")
    return p


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint (a .pt file or a run directory)."""
    p = resolve(path)
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of a file it did not write (a plain pickle)
            # before failing on it: the one-line error below says all the user needs
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        # (its message advises weights_only=False: never right for a file we cannot vouch for)
        raise CheckpointError(f"cannot read checkpoint {p}: not a PyTorch checkpoint, or a "
                              f"corrupt one ({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a dcgan-forge checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p} has format version {ckpt['format_version']}, newer than this "
                              f"version reads ({FORMAT_VERSION}): upgrade dcgan-forge")
    return ckpt


def config_of(ckpt: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(ckpt["config"])


def build_generator(ckpt: dict[str, Any], ema: bool = True) -> Generator:
    """The checkpoint's generator with its weights, in eval mode, on the CPU: the EMA generator
    when the run kept one and `ema` is true, else the raw one (see `generator_kind`)."""
    cfg = config_of(ckpt)
    classes = len(ckpt.get("class_names", [])) if cfg.conditional else 0
    g = Generator(cfg.nz, cfg.ngf, cfg.channels, cfg.image_size, num_classes=classes,
                  label_dim=cfg.label_dim)
    if generator_kind(ckpt, ema) == "ema":
        g.load_state_dict(ckpt["generator_ema"]["weights"])
    else:
        g.load_state_dict(ckpt["generator"])
    return g.eval()


def generator_kind(ckpt: dict[str, Any], ema: bool = True) -> str:
    """"ema" when `build_generator(ckpt, ema)` gives the averaged generator, else "raw"."""
    return "ema" if ema and "generator_ema" in ckpt else "raw"


def step_files(folder: Path) -> list[tuple[int, Path]]:
    """The periodic step-<N>.pt files of a checkpoints folder, oldest first."""
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt")
             if (m := _STEP_FILE.search(p.name))]
    return sorted(found)


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` step-<N>.pt files."""
    for _, p in step_files(folder)[:-keep]:
        p.unlink(missing_ok=True)
