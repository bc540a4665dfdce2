"""Checkpoints: one dict of tensors and plain types, written atomically, loadable with
`torch.load(path, weights_only=True)`.

Keys: format, format_version, config (asdict of TrainConfig), class_names, step, epoch,
generator, generator_ema (when EMA is on: weights with recomputed BatchNorm statistics, updates,
decay), discriminator, optimizer_g, optimizer_d, scaler_g, scaler_d, rng (noise: each rank's
latent generator state; torch: the CPU RNG state), best_fid (the best --eval-every FID so far;
inf without evaluations). A reader needs nothing but this file to
rebuild the generator (`build_generator`) or to resume the run exactly (`build` makes the dict
of a Trainer, `restore` puts one back).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gan.atomic import atomic_write
from gan.errors import UserError
from train import distributed as distrib
from train.config import TrainConfig
from train.ema import GeneratorEMA
from train.nets import AnyGenerator
from train.nets import build_generator as _build

if TYPE_CHECKING:
    from train.loop import Trainer

log = logging.getLogger(__name__)

FORMAT = "dcgan-forge/checkpoint"
FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"step-(\d+)\.pt$")


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or not one of ours."""


def build(t: Trainer) -> dict[str, Any]:
    """The checkpoint dict of trainer `t` (the keys above); a collective under torchrun."""
    noise_states = distrib.gather_object(t.rng.get_state().cpu(), t.dist)
    if t.ema is not None:
        t.ema.calibrate(batch_size=t.cfg.batch_size)  # saved ready to use
    extra = {} if t.ema is None else {"generator_ema": t.ema.state_dict()}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "config": t.cfg.to_dict(), "class_names": list(t.class_names),
        "step": t.step, "epoch": t.step // t.steps_per_epoch,
        "generator": t.g.state_dict(), "discriminator": t.d.state_dict(),
        "optimizer_g": t.opt_g.state_dict(), "optimizer_d": t.opt_d.state_dict(),
        "scaler_g": t.scaler_g.state_dict(), "scaler_d": t.scaler_d.state_dict(),
        "rng": {"noise": noise_states, "torch": torch.get_rng_state()},
        "best_fid": t.best_fid,
        **extra,
    }


def restore(t: Trainer, ckpt: dict[str, Any]) -> None:
    """Put trainer `t` exactly where `ckpt` stopped (same step, weights, optimizers and RNG)."""
    t.g.load_state_dict(ckpt["generator"])
    t.d.load_state_dict(ckpt["discriminator"])
    if t.ema is not None:
        if "generator_ema" in ckpt:
            t.ema.load_state_dict(ckpt["generator_ema"])
        else:  # a checkpoint from before EMA: start the average at its weights
            log.warning("the checkpoint has no EMA generator: the average starts here")
            t.ema = GeneratorEMA(t.g, t.cfg.ema_decay, t.cfg.ema_start)
    t.opt_g.load_state_dict(ckpt["optimizer_g"])
    t.opt_d.load_state_dict(ckpt["optimizer_d"])
    t.scaler_g.load_state_dict(ckpt["scaler_g"])
    t.scaler_d.load_state_dict(ckpt["scaler_d"])
    states = ckpt["rng"]["noise"]
    if len(states) != t.dist.world:
        log.warning("checkpoint has %d ranks' latent RNG, this run %d: reseeding those",
                    len(states), t.dist.world)
    try:
        if t.dist.rank < len(states):
            t.rng.set_state(states[t.dist.rank])  # a CPU ByteTensor for any device
    except RuntimeError:  # saved on another device type: its RNG state does not fit here
        log.warning("the checkpoint's latent RNG comes from another device type: reseeding "
                    "it, so this resumed run is not bit-identical to an uninterrupted one")
    torch.set_rng_state(ckpt["rng"]["torch"])
    t.step = int(ckpt["step"])
    t.best_fid = float(ckpt.get("best_fid", float("inf")))
    log.info("resumed %s at step %d", t.out, t.step)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename: never a torn checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


def resolve(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or a run directory meaning its checkpoints/last.pt."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}: {_missing_hint(p)}")
    return p


def _missing_hint(p: Path) -> str:
    """What to do about a missing checkpoint file, by the name it was asked for."""
    if p.name == "best.pt":
        return ("best.pt exists only in runs trained with --eval-every N (it keeps the lowest "
                f"FID); export {p.parent / 'last.pt'} or the run directory instead")
    if p.name == "last.pt" and p.parent.is_dir():
        found = sorted(x.name for x in p.parent.glob("*.pt"))
        if found:
            return f"give one of the checkpoints there ({', '.join(found)})"
    return "train first (gan train --out RUN), or give a .pt file or a run directory"


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


def build_generator(ckpt: dict[str, Any], ema: bool = True) -> AnyGenerator:
    """The checkpoint's generator with its weights, in eval mode, on the CPU: the EMA generator
    when the run kept one and `ema` is true, else the raw one (see `generator_kind`)."""
    cfg = config_of(ckpt)
    classes = len(ckpt.get("class_names", [])) if cfg.conditional else 0
    g = _build(cfg, classes)  # the architecture the config names (dcgan or mlp)
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
