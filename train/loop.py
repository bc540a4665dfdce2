"""The training loop: the Trainer owns one run's models, optimizers, data and RNG, and `fit`
trains to the end (train.run sets the run up; train.checkpoint saves and restores it).

One generator step = k discriminator steps (Goodfellow et al.'s Algorithm 1, each on its own real
minibatch and fresh latents) then one generator step on the last fakes, which are reused rather
than regenerated (the D step sees them detached). Losses accumulate on the device; the host syncs
only at the logging interval.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler

from gan.atomic import atomic_write
from train import data, outputs
from train import distributed as distrib
from train.config import ConfigError, TrainConfig
from train.ema import GeneratorEMA
from train.extra_losses import ExtraLosses
from train.interrupt import StopSignal
from train.losses import make_loss
from train.metrics import Reporter
from train.model import init_weights
from train.nets import AnyGenerator, build_discriminator, build_generator
from train.periodic_eval import PeriodicEval
from train.precision import PRECISION_NAMES, autocast_dtype
from train.summary import TrainSummary

log = logging.getLogger(__name__)

def _adam(module: nn.Module, lr: float, cfg: TrainConfig, device: torch.device
          ) -> torch.optim.Adam:
    """Adam, fused into one kernel per step on CPU and CUDA (torch checks that only at step())."""
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2),
                            fused=device.type in ("cpu", "cuda"))


class Trainer:
    """Owns the models, optimizers, data and RNG of one run (one process under torchrun)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: distrib.Dist) -> None:
        self.device, self.dist = device, dist
        images = self._load_data(cfg)
        if cfg.channels and cfg.channels != images.channels:
            raise ConfigError(f"--channels {cfg.channels} but {cfg.dataset} has "
                              f"{images.channels} channels")
        self.cfg = cfg = replace(cfg, channels=images.channels)
        self.class_names = images.class_names
        self.images = images.images.to(device)  # (N, C, h, w) uint8, gathered per batch
        self.labels = data.class_labels(cfg, images)
        if self.labels is not None:
            self.labels = self.labels.to(device)  # (N,) int64, gathered with the images
        classes = len(self.class_names) if cfg.conditional else 0
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.g = build_generator(cfg, classes)  # cfg.arch: dcgan or mlp
        self.d = build_discriminator(cfg, classes)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        for m in (self.g, self.d):
            m.apply(init_weights)
            m.to(device)
            m.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        # G's first layer sees a 1x1 input, where channels_last means nothing: keep its weight
        # contiguous (inductor's convolution_backward asserts on those strides, seen on CUDA).
        first = self.g.main[0]  # (an mlp's is a Linear: 2-d, untouched by channels_last)
        if isinstance(first, nn.ConvTranspose2d):
            first.weight.data = first.weight.data.contiguous()
        # Gradients of D's weights are reduced across ranks in the D step (DDP); the G step and the
        # gradient penalties (double backward, which compiled graphs do not support) use D eagerly.
        self.d_ddp: nn.Module = DDP(self.d) if dist.enabled else self.d
        self.g_train = self._compiled(DDP(self.g) if dist.enabled else self.g)
        self.d_train = self._compiled(self.d_ddp)
        self.d_frozen = self._compiled(self.d) if dist.enabled else self.d_train
        self.opt_g = _adam(self.g, cfg.lr_g, cfg, device)
        self.opt_d = _adam(self.d, cfg.lr_d, cfg, device)
        self.loss = make_loss(cfg.loss, gp_weight=cfg.gp_weight, clip_value=cfg.clip_value)
        # both weights are numbers once the config is built (TrainConfig.__post_init__)
        self.extra = ExtraLosses(cfg.class_weight or 0.0, cfg.mode_seeking or 0.0)
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        # Latents and penalty noise come from one generator per rank, saved in checkpoints.
        self.rng = torch.Generator(device).manual_seed(cfg.seed * 1000 + dist.rank + 1)
        # The fixed sample batch; conditional: whole rows of classes 0..C-1, one class a column.
        n = -(-cfg.num_samples // classes) * classes if classes else cfg.num_samples
        self.fixed_noise = torch.randn(n, cfg.nz,
                                       generator=torch.Generator().manual_seed(cfg.seed)).to(device)
        self.fixed_labels = torch.arange(n, device=device) % classes if classes else None
        self.ema = GeneratorEMA(self.g, cfg.ema_decay, cfg.ema_start) if cfg.ema_decay > 0 else None
        # A range is all the sampler needs of a dataset: its length.
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(len(self.images)), num_replicas=dist.world, rank=dist.rank,  # type: ignore[arg-type]
            shuffle=True, seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // (cfg.batch_size * cfg.d_steps)
        if self.steps_per_epoch < 1:
            fits = len(self.sampler) // cfg.d_steps  # the largest batch one step can fill
            hint = (f"use --batch-size {fits} or less" if fits else
                    "add images, or use fewer processes or D steps")
            raise ConfigError(f"{len(self.images)} images are too few for batch size "
                              f"{cfg.batch_size} x {cfg.d_steps} D steps x {dist.world} processes: "
                              f"{hint}")
        self.step = 0
        self.best_fid = float("inf")  # of the --eval-every evaluations so far
        self.evaluate: PeriodicEval | None = None  # with --eval-every, made by fit()
        self.out = Path(cfg.out)
        self.reporter: Reporter | None = None
        self._acc = torch.zeros(4, device=device)  # sums of loss_d, loss_g, D(x), D(G(z))
        self._acc_steps = 0
        self._last_sample: Path | None = None
        self.summary: TrainSummary | None = None  # rank 0, once fit() returns

    def _compiled(self, module: nn.Module) -> nn.Module:
        """torch.compile'd (fixed shapes: every batch has batch_size images) or as is."""
        if not self.cfg.compile:
            return module
        return torch.compile(module, dynamic=False)  # type: ignore[return-value]

    def _load_data(self, cfg: TrainConfig) -> data.ImageData:
        """Rank 0 reads first (and downloads if it must); the others then read what it found."""
        if self.dist.is_main:
            try:
                return data.load(cfg)
            finally:  # also on failure: the other ranks then fail on their own, not hang
                self.dist.barrier()
        self.dist.barrier()
        return data.load(cfg, download=False)

    @property
    def total_steps(self) -> int:
        total = self.cfg.epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # The loop ---------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train to the end; on SIGINT/SIGTERM stop after the step, save, raise Interrupted."""
        with StopSignal() as self.stop_signal:
            self._fit()

    def _fit(self) -> None:
        cfg = self.cfg
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            outputs.remove_stale(self)
            text = json.dumps(cfg.to_dict(), indent=2) + "\n"
            atomic_write(self.out / "config.json", lambda f: f.write(text.encode()))
            self.reporter = Reporter(self.out, self.total_steps, self.step,
                                     budget_s=cfg.max_seconds)
        log.info("training %s %s %dpx on %s (%s), %d steps of %d images x %d process(es), "
                 "precision %s", cfg.arch, cfg.dataset, cfg.image_size, self.device, cfg.loss,
                 self.total_steps, cfg.batch_size, self.dist.world,
                 PRECISION_NAMES[self.amp_dtype])
        if cfg.eval_every:
            self.evaluate = PeriodicEval(cfg, self.dist)
        self._tick = (time.perf_counter(), self.step)
        self._began = time.perf_counter()
        first_step, stop = self.step, False
        if self.step >= self.total_steps:
            log.info("nothing to do: the run is at step %d of %d (raise --epochs or --max-steps "
                     "to extend it)", self.step, self.total_steps)
        while self.step < self.total_steps:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            stop = interrupted = False
            for group in self.epoch_batches(epoch)[offset:]:
                self.train_step(group)
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._log(epoch)
                    stop = self._out_of_time()
                if self.evaluate is not None and self.step % cfg.eval_every == 0:
                    self.evaluate(self, epoch)  # first: a checkpoint of this step has its best_fid
                if self.step % cfg.checkpoint_every == 0:
                    outputs.save(self, periodic=True)
                interrupted = self.stop_signal.agreed(self.dist)
                if self.step == self.total_steps or stop or interrupted:
                    break
            outputs.sample(self)  # at every epoch end, and at the end of a cut-short run
            outputs.save(self, periodic=False)
            if interrupted:
                raise self.stop_signal.stopped(self.step, self.total_steps, cfg.out, self.dist)
            if stop:
                log.info("stopped at step %d: the --max-seconds budget of %gs is spent",
                         self.step, cfg.max_seconds)
                break
        if self.dist.is_main:
            self.summary = outputs.summary(self, self.step - first_step, out_of_time=stop)

    def _out_of_time(self) -> bool:
        """Whether --max-seconds is spent (on any rank: all ranks stop at the same step)."""
        if not self.cfg.max_seconds:
            return False
        spent = time.perf_counter() - self._began >= self.cfg.max_seconds
        return distrib.any_rank(spent, self.dist)

    def epoch_batches(self, epoch: int) -> torch.Tensor:
        """This rank's shuffled indices for `epoch`, as (steps, d_steps, batch); a pure function
        of (seed, epoch, rank), which is what makes resuming mid-epoch exact."""
        self.sampler.set_epoch(epoch)
        idx = torch.tensor(list(self.sampler), dtype=torch.int64)
        per_step = self.cfg.batch_size * self.cfg.d_steps
        n = self.steps_per_epoch
        return idx[: n * per_step].view(n, self.cfg.d_steps, self.cfg.batch_size).to(self.device)

    def _real(self, idx: torch.Tensor) -> torch.Tensor:
        x = data.to_model_input(self.images[idx], self.cfg.image_size)  # (B, C, S, S) in [-1, 1]
        return x.contiguous(memory_format=self.memory_format)

    def train_step(self, group: torch.Tensor) -> None:
        """k discriminator steps, then one generator step; group is (k, B) image indices. The
        caller counts steps (`fit` advances self.step)."""
        cfg, loss = self.cfg, self.loss
        k = group.shape[0]
        for i in range(k):
            real = self._real(group[i])
            # conditional: fakes take the real batch's labels, so D compares like with like
            y = None if self.labels is None else self.labels[group[i]]  # (B,) int64
            z = torch.randn(real.shape[0], cfg.nz, device=self.device, generator=self.rng)
            with self._autocast():
                # The last fakes keep their graph: the generator step below reuses them.
                with torch.no_grad() if i < k - 1 else contextlib.nullcontext():
                    fake = self.g_train(z, y)
                d_real, classes = self.extra.critic(self.d_train, real, y)  # classes: real only
                d_fake = self.d_train(fake.detach(), y)
                loss_d = loss.d_loss(d_real, d_fake) + self.extra.classes(classes, y)
                critic = self.d_ddp if y is None else functools.partial(self.d_ddp, labels=y)
                penalty = loss.penalty(critic, real, fake.detach(), self.rng)
                if penalty is not None:
                    loss_d = loss_d + penalty
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(loss_d).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            loss.after_d_step(self.d)
        # Generator step: D's weights need no gradients here, only its input does; no DDP
        # wrapper either, since no D gradients are reduced in this step.
        self.d.requires_grad_(False)
        with self._autocast():
            g_logits, classes = self.extra.critic(self.d_frozen, fake, y)
            # z and y are the last D step's: they made `fake`
            loss_g = (loss.g_loss(g_logits) + self.extra.classes(classes, y)
                      + self.extra.diversity(fake, z, y))
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.d.requires_grad_(True)
        if self.ema is not None:
            self.ema.update(self.g)
        with torch.no_grad():
            self._acc += torch.stack([loss_d.float(), loss_g.float(), loss.score(d_real),
                                      loss.score(d_fake)])
        self._acc_steps += 1

    def sync(self) -> None:
        """Wait for every queued step, as `_log`'s read of the sums does at the loop's logging
        steps (benches time whole blocks of `train_step` between two)."""
        self._acc.tolist()

    def _log(self, epoch: int) -> None:
        """The one host sync: averages since the last log, and images/s over that span."""
        sums = (self._acc / max(self._acc_steps, 1)).tolist()
        self._acc.zero_()
        self._acc_steps = 0
        now = time.perf_counter()
        t0, s0 = self._tick
        self._tick = (now, self.step)
        imgs = (self.step - s0) * self.cfg.batch_size * self.cfg.d_steps * self.dist.world
        if self.reporter is None:
            return
        self.reporter.scalars(self.step, epoch, {
            "loss/d": sums[0], "loss/g": sums[1], "d/real": sums[2], "d/fake": sums[3],
            "speed/images_per_s": imgs / max(now - t0, 1e-9)})

    # Outputs ----------------------------------------------------------------------------------

    def generator(self) -> AnyGenerator:
        """The generator that samples, evaluations and exports use: the EMA one when kept (with
        fresh BatchNorm statistics), else G itself; in eval mode (put G back with .train())."""
        if self.ema is not None:
            return self.ema.calibrate(batch_size=self.cfg.batch_size)
        return self.g.eval()

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()
            self.reporter = None
