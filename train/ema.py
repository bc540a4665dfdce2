"""An exponential moving average of the generator's weights (Karras et al. 2018, Yazici et al.
2019): samples from the averaged G are smoother and usually score better than the last G.

Weights: ema <- ema + (1 - beta_t) (g - ema) after every generator step, with the warm-up
beta_t = min(decay, (1 + t) / (10 + t)) at step t, so early averages do not drag in the random
initial weights. With a start step s (--ema-start) the average copies G for its first s updates
and t counts from there. BatchNorm statistics are not averaged: the live G's running statistics
describe the live weights, not the averaged ones, so before the EMA generator is used (samples,
checkpoints, eval, export) its statistics are recomputed by forward passes over fresh latents
(`calibrate`), the "standing statistics" of Brock et al. 2019.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from train.nets import AnyGenerator


class GeneratorEMA:
    """The averaged copy of a generator; `update` after each G step, `calibrate` before use."""

    def __init__(self, generator: AnyGenerator, decay: float, start: int = 0) -> None:
        self.decay, self.start = decay, start
        self.model: AnyGenerator = copy.deepcopy(generator).eval().requires_grad_(False)
        self.model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        self.updates = 0  # generator steps averaged so far (t of the warm-up)
        self.calibrated_at = -1  # `updates` when the BN statistics were last recomputed

    def beta(self) -> float:
        """The weight of the old average in this update: 0 (a copy of G) before the start."""
        t = self.updates - self.start
        return 0.0 if t < 0 else min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        """Move the average towards `generator`'s current weights (one fused lerp)."""
        ema: list[torch.Tensor] = list(self.model.parameters())
        live = [p.detach() for p in generator.parameters()]
        torch._foreach_lerp_(ema, live, 1.0 - self.beta())
        self.updates += 1

    @torch.no_grad()
    def calibrate(self, batches: int = 8, batch_size: int = 128, seed: int = 0) -> AnyGenerator:
        """Recompute BatchNorm statistics for the averaged weights; returns the model (eval).

        A fixed seed of its own keeps the training RNG untouched (resumes stay exact) and makes
        the statistics a pure function of the weights. A no-op when nothing changed since.
        """
        if self.calibrated_at == self.updates:
            return self.model
        g = self.model
        device = next(g.parameters()).device
        rng = torch.Generator(device).manual_seed(seed)
        norms = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batches
        g.train()
        for _ in range(batches):
            z = torch.randn(batch_size, g.nz, device=device, generator=rng)
            labels = (torch.randint(0, g.num_classes, (batch_size,), device=device,
                                    generator=rng) if g.num_classes else None)
            g(z, labels)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.calibrated_at = self.updates
        return g.eval()

    def state_dict(self) -> dict[str, object]:
        return {"weights": self.model.state_dict(), "updates": self.updates,
                "decay": self.decay}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["weights"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[call-overload]
        self.calibrated_at = self.updates  # checkpoints hold calibrated statistics
