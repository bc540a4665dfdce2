"""What a finished `gan train` tells its user: how much it trained, how fast, where things are,
and what to run next. Plain data and text only (no torch), so the CLI prints it and tests read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def duration(seconds: float) -> str:
    """12.3 -> "12.3 s", 451 -> "7 min 31 s", 4000 -> "1 h 6 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min"


@dataclass(kw_only=True)
class TrainSummary:
    """One training process's account of itself (rank 0 under torchrun)."""

    out: Path
    """The run directory."""
    step: int
    """The step the run ended at."""
    total_steps: int
    """The step it would end at without a --max-seconds budget."""
    steps_run: int
    """Generator steps this process trained (fewer than `step` after a --resume)."""
    images: int
    """Real images those steps consumed, over all processes."""
    seconds: float
    """Wall time of those steps, evaluations, samples and checkpoints included."""
    out_of_time: bool = False
    """Whether the --max-seconds budget ended it."""
    sample: Path | None = None
    """The newest sample grid."""
    best_fid: float | None = None
    """With --eval-every: the best FID so far (checkpoints/best.pt)."""

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def lines(self) -> list[str]:
        """The closing summary: a few lines for people."""
        if self.steps_run == 0:
            head = f"nothing to train: {self.out} is at step {self.step} of {self.total_steps}"
        else:
            head = (f"trained {self.steps_run:,} steps ({self.images:,} images) in "
                    f"{duration(self.seconds)}: {self.images_per_s:,.0f} images/s")
            if self.out_of_time:
                head += f"; --max-seconds stopped it at step {self.step:,} of {self.total_steps:,}"
        ckpt = self.out / "checkpoints"
        lines = [head, f"  checkpoint   {ckpt / 'last.pt'}"]
        if self.best_fid is not None:
            lines.append(f"  best         {ckpt / 'best.pt'} (FID {self.best_fid:.4g}, lower is "
                         "better)")
        if self.sample is not None:
            lines.append(f"  samples      {self.sample} (one grid per epoch in "
                         f"{self.sample.parent}/)")
        lines += [f"  metrics      {self.out / 'metrics.jsonl'}",
                  f"  TensorBoard  tensorboard --logdir {self.out / 'tb'}",
                  f"next: gan export {self.out} --out {self.out / 'g.onnx'}"]
        return lines
