"""Ctrl-C (SIGINT) and SIGTERM during training: finish the step, save last.pt, say how to resume.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be
(typer turns that into exit 130 before any handler of ours runs), so a run lost up to
--checkpoint-every - 1 steps and a run stopped before its first checkpoint left a folder that
blocked a re-run. Here the signal only sets a flag; the loop reads it at each step boundary
(under torchrun through `any_rank`, so every rank stops after the same step, as with
--max-seconds), writes last.pt and raises `Interrupted`, which the CLI prints as one line.

Under torchrun, Ctrl-C reaches every rank from the terminal and again, at once, from the agent:
a second SIGINT within a second counts as the same one. A later second Ctrl-C quits at once
without saving (KeyboardInterrupt), for a step that never ends.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
import time
from types import FrameType, TracebackType

from gan.errors import Interrupted
from train import distributed as distrib

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SAME_SIGNAL_S = 1.0  # a repeat within this is a duplicate delivery (terminal + torchrun agent)


class StopSignal:
    """While entered: SIGINT/SIGTERM set `signum` instead of killing the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignal:
        # signal handlers can only be set in the main thread (a run in a thread keeps defaults)
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum, self._at = signum, time.monotonic()
        elif signum == signal.SIGINT and time.monotonic() - self._at > _SAME_SIGNAL_S:
            raise KeyboardInterrupt  # asked twice: stop now, without saving

    def agreed(self, d: distrib.Dist) -> bool:
        """Whether a stop signal reached any rank (a collective: every rank calls it each step)."""
        return distrib.any_rank(self.signum is not None, d)

    def stopped(self, step: int, total: int, out: str, d: distrib.Dist) -> Interrupted:
        """The exception that ends the run: one line on rank 0, the exit status 128 + signal
        (130 for SIGINT, 143 for SIGTERM; a rank that only heard of it from another: SIGTERM's)."""
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        message = (f"interrupted by {name} at step {step} of {total}: saved "
                   f"{os.path.join(out, 'checkpoints', 'last.pt')}; resume with: "
                   f"{resume_command(out, d)}") if d.is_main else ""
        return Interrupted(message, exit_code=128 + signum)


def resume_command(out: str, d: distrib.Dist) -> str:
    """The command that continues this run, as this process was launched."""
    args = f"-m gan train --resume --out {shlex.quote(out)}"
    if not d.enabled:
        return f"gan train --resume --out {shlex.quote(out)}"
    if int(os.environ.get("LOCAL_WORLD_SIZE", d.world)) == d.world:  # one machine
        return f"torchrun --standalone --nproc-per-node {d.world} {args}"
    return f"torchrun <this run's launch options> {args}"
