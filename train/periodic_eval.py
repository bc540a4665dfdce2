"""--eval-every: FID/KID/precision/recall of the sampling generator every N steps, logged, with
checkpoints/best.pt following the best FID. The training side's one hook into `quality`
(imported here, lazily, only when a run asks for evaluations)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from train import checkpoint
from train import distributed as distrib
from train.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from quality.evaluation import TrainingEval
    from train.loop import Trainer

log = logging.getLogger(__name__)


class PeriodicEval:
    """The evaluation of one run; rank 0 scores, every rank takes part in best.pt."""

    def __init__(self, cfg: TrainConfig, dist: distrib.Dist) -> None:
        """The evaluation's features, ready before the first step (trained here if not cached),
        so a dataset it cannot work with fails now on every rank (a collective)."""
        self.scorer: TrainingEval | None = None  # rank 0 only
        failed: Exception | None = None
        if dist.is_main:
            from quality.evaluation import TrainingEval

            try:
                self.scorer = TrainingEval(cfg)
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks know
                failed = e
        if distrib.any_rank(failed is not None, dist):
            if failed is not None:
                raise failed
            raise ConfigError("--eval-every: rank 0 could not prepare the evaluation")

    def __call__(self, t: Trainer, epoch: int) -> None:
        """Score t's sampling generator on --eval-images images (rank 0), log the scores, and
        save checkpoints/best.pt on a new best FID (a collective: every rank calls it)."""
        better = False
        if t.dist.is_main:
            result = self._score(t)
            values = {"eval/fid": result["fid"], "eval/kid": result["kid_mean"],
                      "eval/precision": result["precision"], "eval/recall": result["recall"]}
            if "mean_class_accuracy" in result.get("classifier", {}):
                values["eval/class_accuracy"] = result["classifier"]["mean_class_accuracy"]
            assert t.reporter is not None
            t.reporter.record(t.step, epoch, values)
            better = result["fid"] < t.best_fid
            if better:
                t.best_fid = result["fid"]
        if distrib.any_rank(better, t.dist):
            state = checkpoint.build(t)
            if t.dist.is_main:
                checkpoint.atomic_save(state, t.out / "checkpoints" / "best.pt")
                log.info("step %d: best FID so far (%.4g): checkpoints/best.pt", t.step,
                         t.best_fid)

    @torch.no_grad()
    def _score(self, t: Trainer) -> dict[str, Any]:
        assert self.scorer is not None
        try:
            return self.scorer.score(t.generator(), t.device,
                                     list(t.class_names) if t.cfg.conditional else [])
        finally:
            t.g.train()
