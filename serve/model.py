"""The served generator: gan.model's checked generator on a session set up for serving (every
batch size warmed up, one inference worker using the process's cores)."""

from __future__ import annotations

import logging
import os

from gan.model import GeneratorModel
from gan.session import SessionOptions

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Cores this process may run on: its CPU set (taskset, container CPU sets), capped at the
    cgroup's CPU quota (a container limited to 2 CPUs sees every core of its node)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    quota = cgroup_cpus()
    return max(1, min(cores, quota)) if quota else cores


def cgroup_cpus(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """The cgroup v2 CPU limit rounded up ("200000 100000" -> 2), None without a limit."""
    try:
        quota, period = open(path).read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return -(-int(quota) // int(period))


class ServedModel(GeneratorModel):
    """The model `gan serve` and `gan generate --model` run: `run(z, labels)` -> raw output."""

    def __init__(self, path: str | os.PathLike[str], *, providers: str = "cpu",
                 max_batch: int = 64, intra_op_threads: int = 0, fp16: bool = False,
                 cache_dir: str | None = None) -> None:
        super().__init__(path, SessionOptions(
            providers=providers, fp16=fp16, max_batch=max_batch, cache_dir=cache_dir,
            warm_every_batch=True, intra_op_threads=intra_op_threads or default_threads()))
        log.info("model %s (%s, %dx%dx%d, nz %d) on %s", self.path, self.info.model_id,
                 self.info.height, self.info.width, self.info.channels, self.info.nz,
                 self.provider)
