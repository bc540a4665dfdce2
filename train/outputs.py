"""A training run's outputs: sample grids, checkpoints, the closing summary, and the stale
temporary files a killed run left; functions of the Trainer (train.loop) that writes them.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from PIL import Image

from gan import pictures
from gan.atomic import atomic_write, remove_stale_temporaries
from train import checkpoint
from train.summary import TrainSummary

if TYPE_CHECKING:
    from train.loop import Trainer

log = logging.getLogger(__name__)


def summary(t: Trainer, steps_run: int, out_of_time: bool) -> TrainSummary:
    per_step = t.cfg.batch_size * t.cfg.d_steps * t.dist.world
    return TrainSummary(
        out=t.out, step=t.step, total_steps=t.total_steps, steps_run=steps_run,
        images=steps_run * per_step, seconds=time.perf_counter() - t._began,
        out_of_time=out_of_time, sample=t._last_sample,
        best_fid=t.best_fid if t.best_fid != float("inf") else None)


def remove_stale(t: Trainer) -> None:
    """Half-written files of a process killed mid-write (a checkpoint's are ~40 MB): this
    run owns its folder now, so any left there are stale."""
    removed = [p for folder in (t.out, t.out / "checkpoints", t.out / "samples")
               for p in remove_stale_temporaries(folder)]
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write, e.g. %s",
                 len(removed), removed[0])

@torch.no_grad()
def sample(t: Trainer) -> None:
    """samples/step-<N>.png: the fixed noise through G in eval mode (as exported)."""
    if not t.dist.is_main:
        return
    images = t.generator()(t.fixed_noise, t.fixed_labels).float().cpu()
    t.g.train()
    nrow = (len(t.class_names) if t.fixed_labels is not None
            else max(1, int(t.cfg.num_samples ** 0.5)))
    # (N, C, S, S) in [-1, 1] -> (N, S, S, C) uint8 as served: round half to even
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    grid = pictures.grid(list(pixels.numpy()), nrow=nrow)  # gan generate's style
    grid = pictures.upscale(grid, pictures.auto_scale(grid.shape[1], t.cfg.sample_scale))
    path = t.out / "samples" / f"step-{t.step}.png"
    atomic_write(path, lambda f: Image.fromarray(grid.squeeze(2) if grid.shape[2] == 1
                                                 else grid).save(f, format="png"))
    t._last_sample = path
    assert t.reporter is not None
    t.reporter.image(t.step, torch.from_numpy(grid).permute(2, 0, 1))


def save(t: Trainer, periodic: bool) -> None:
    state = checkpoint.build(t)
    if not t.dist.is_main:
        return
    folder = t.out / "checkpoints"
    if periodic:
        checkpoint.atomic_save(state, folder / f"step-{t.step}.pt")
        checkpoint.prune(folder, t.cfg.keep_checkpoints)
    checkpoint.atomic_save(state, folder / "last.pt")
