"""The evaluation configuration: one typed dataclass, documented field by field.

`gan eval` only overrides these defaults. No torch import here: `gan --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from gan.choices import PROVIDERS, check_choices
from gan.errors import UserError
from train.config import MIN_EVAL_IMAGES

FEATURES = ("classifier", "inception")
DEVICES = ("auto", "cpu", "cuda")


class EvalConfigError(UserError):
    """An evaluation setting that cannot work."""


@dataclass(kw_only=True)
class EvalConfig:
    """Everything that defines one `gan eval` of a generator."""

    source: str
    """A run directory (its checkpoints/last.pt), a checkpoint (.pt) or an exported model
    (.onnx)."""
    num_images: int = 10000
    """Generated images to score (and real test images to compare with, at most the split)."""
    features: str = "classifier"
    """Feature space: classifier (a small CNN the project trains on the dataset's train split and
    caches; offline) or inception (the standard FID Inception-v3; needs dcgan-forge[inception]
    and its weights). Scores from different feature spaces are not comparable."""
    inception_weights: str | None = None
    """--features inception: the FID Inception weights file
    (pt_inception-2015-12-05-6726825d.pth); unset means torch-fidelity's download."""
    ema: bool = True
    """Checkpoints: score the EMA generator when the run kept one (--no-ema: the raw one)."""
    seed: int = 0
    """Seed of the latents, the labels' order and the real subset."""
    data_dir: str | None = None
    """Where the real data is, when not where the run trained from (same meaning as in
    `gan train`)."""
    providers: str = "cpu"
    """ONNX models: execution provider (cpu, cuda, tensorrt, auto)."""
    device: str = "auto"
    """Checkpoints: torch device for generation and features (auto, cpu, cuda)."""
    out: str | None = None
    """Where to write the JSON report; unset: eval.json in a run directory, else beside the
    checkpoint or model as <name>.eval.json."""

    def __post_init__(self) -> None:
        if self.num_images < MIN_EVAL_IMAGES:
            raise EvalConfigError(f"-n must be at least {MIN_EVAL_IMAGES}, got "
                                  f"{self.num_images}")
        check_choices(self, {"features": FEATURES, "providers": PROVIDERS, "device": DEVICES},
                      EvalConfigError)
