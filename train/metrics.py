"""What a run reports: TensorBoard events, metrics.jsonl, and progress on the terminal.

Only rank 0 makes a Reporter; the loop hands it plain floats at the logging interval.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gan.atomic import atomic_write

log = logging.getLogger(__name__)


def _drop_rows_after(path: Path, step: int) -> None:
    """Keep only the metrics.jsonl rows up to `step` (rewritten atomically)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [x for x in lines if x.strip() and json.loads(x).get("step", 0) <= step]
    if len(keep) != len(lines):
        atomic_write(path, lambda f: f.write("".join(keep).encode()))


# The progress bar counts thousandths of the run, so a step count and a time budget share it.
_BAR = 1000


class Reporter:
    """TensorBoard + JSON lines + a rich progress bar on a terminal (plain log lines otherwise).

    With a --max-seconds budget the bar fills with whichever ends the run first, the steps or the
    time, so its remaining time is the budget's, not that of steps the run will never reach."""

    def __init__(self, out: Path, total_steps: int, start_step: int,
                 budget_s: float = 0.0) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(out / "tb"))
        _drop_rows_after(out / "metrics.jsonl", start_step)  # a resumed run logs those again
        self.jsonl = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.total_steps, self.start_step, self.budget_s = total_steps, start_step, budget_s
        self.started = time.time()
        self.progress: Progress | None = None
        if sys.stderr.isatty():
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[where]}"),
                TextColumn("{task.fields[status]}"), TimeRemainingColumn(), transient=False)
            self.task = self.progress.add_task("train", total=_BAR, completed=0,
                                               where=self.where(start_step), status="")
            self.progress.start()

    def fraction(self, step: int) -> float:
        """How much of this process's run is done: of its steps, or of the time budget."""
        done = (step - self.start_step) / max(self.total_steps - self.start_step, 1)
        if self.budget_s:
            done = max(done, (time.time() - self.started) / self.budget_s)
        return min(done, 1.0)

    def where(self, step: int) -> str:
        text = f"step {step}/{self.total_steps}"
        if self.budget_s:
            text += f", {time.time() - self.started:.0f}/{self.budget_s:g} s"
        return text

    def scalars(self, step: int, epoch: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        record: dict[str, Any] = {"step": step, "epoch": epoch, "time": round(time.time(), 3)}
        record.update({k: round(v, 6) for k, v in values.items()})
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        status = (f"loss_d {values['loss/d']:.3f} loss_g {values['loss/g']:.3f} "
                  f"{values['speed/images_per_s']:.0f} img/s")
        if self.progress is not None:
            self.progress.update(self.task, completed=round(self.fraction(step) * _BAR),
                                 where=self.where(step), status=status)
        else:
            log.info("step %d epoch %d %s D(x) %.3f D(G(z)) %.3f", step, epoch, status,
                     values["d/real"], values["d/fake"])

    def record(self, step: int, epoch: int, values: dict[str, float]) -> None:
        """Scalars other than the training losses (evaluations): TensorBoard and metrics.jsonl."""
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        row = {"step": step, "epoch": epoch, "time": round(time.time(), 3),
               **{k: round(v, 6) for k, v in values.items()}}
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        log.info("step %d: %s", step, "  ".join(f"{k} {v:.4g}" for k, v in values.items()))

    def image(self, step: int, grid: torch.Tensor) -> None:
        """grid: (C, H, W) uint8, C = 1 or 3."""
        self.writer.add_image("samples", grid, step, dataformats="CHW")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.writer.close()
        self.jsonl.close()
