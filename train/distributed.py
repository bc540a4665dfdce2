"""Where training runs: the device, and under torchrun which process this is and the process
group around the run."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from train.config import ConfigError


@dataclass(frozen=True)
class Dist:
    """rank/world of this process; world 1 means plain single-process training."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """auto|cpu|cuda -> the torch device; --device cuda without a GPU is one clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch here")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def init(device: torch.device) -> Dist:
    """Join torchrun's process group when WORLD_SIZE > 1: nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local)


def any_rank(flag: bool, d: Dist) -> bool:
    """Whether `flag` is true on any rank (a collective: all ranks must call it), so that a
    decision one rank takes alone (a time budget ran out) is taken by all of them together."""
    if not d.enabled:
        return flag
    # nccl reduces CUDA tensors only; gloo CPU ones
    device = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_object(obj: object, d: Dist) -> list[object]:
    """Every rank's `obj`, in rank order (a collective: all ranks must call it)."""
    if not d.enabled:
        return [obj]
    out: list[object] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out
