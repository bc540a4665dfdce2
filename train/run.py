"""A training run's folder and its life: `run(overrides, out, resume)` checks the run directory
(a fresh run never overwrites one; a resumed run keeps its identity), builds a Trainer and trains
to the end, closing everything on every path.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from train import checkpoint
from train import distributed as distrib
from train.config import ConfigError, TrainConfig
from train.loop import Trainer

# Flags that may change when a run is resumed; everything else is the run's identity.
RESUMABLE = {"epochs", "max_steps", "max_seconds", "log_every", "checkpoint_every",
             "keep_checkpoints", "device", "data_dir", "out", "eval_every"}
# (not eval_images: FID depends on the sample count, and best_fid must stay comparable)


def run(overrides: dict[str, Any], out: str, resume: bool = False) -> Path:
    """Train in run directory `out` with TrainConfig defaults overridden by `overrides`; returns
    the run directory."""
    cfg, ckpt = resolve_config(overrides, Path(out), resume)
    device = distrib.resolve_device(cfg.device)
    dist = distrib.init(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        trainer = Trainer(cfg, device, dist)
        if ckpt is not None:
            checkpoint.restore(trainer, ckpt)
        try:
            trainer.fit()
        finally:
            trainer.close()
    finally:
        dist.close()
    return Path(cfg.out)


def resolve_config(overrides: dict[str, Any], out: Path, resume: bool
                   ) -> tuple[TrainConfig, dict[str, Any] | None]:
    """A fresh run's config, or a resumed run's saved config with the allowed overrides."""
    last = out / "checkpoints" / "last.pt"
    overrides = {**overrides, "out": str(out)}
    if not resume:
        if last.exists():
            raise ConfigError(f"{out} already holds a run ({last}): pass --resume to continue it, "
                              "or choose another --out")
        if (out / "config.json").exists():
            raise ConfigError(f"{out} holds a run that stopped before its first checkpoint: "
                              "delete that folder or choose another --out")
        return TrainConfig(**overrides), None
    if not last.exists():
        raise checkpoint.CheckpointError(f"--resume: no checkpoint at {last}")
    ckpt = checkpoint.load(last)
    saved = checkpoint.config_of(ckpt)
    changed = sorted(k for k, v in overrides.items()
                     if k not in RESUMABLE and getattr(saved, k) != v)
    if changed:
        k = changed[0]
        raise ConfigError(f"--{k.replace('_', '-')} cannot change when resuming (the run has "
                          f"{k}={getattr(saved, k)!r}); resumable: "
                          f"{', '.join(sorted(RESUMABLE))}")
    keep = {k: v for k, v in overrides.items() if k in RESUMABLE}
    return replace(saved, **keep), ckpt
