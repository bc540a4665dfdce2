"""Where samples come from: the generator of a run, a checkpoint or an exported ONNX model.

Each becomes a Sampler, z (B, nz) [, labels (B,)] -> images (B, C, S, S) in [-1, 1], that
`quality.evaluation.evaluate` scores against the dataset's real test split. An ONNX model is
scored through ONNX Runtime, exactly as it will be served (uint8 models are mapped back to
[-1, 1]), and its metadata alone says which dataset, size and classes it has.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan.contract import pixels_to_unit, sha256_file
from gan.errors import UserError
from quality.config import EvalConfig
from train import checkpoint
from train.config import TrainConfig
from train.distributed import resolve_device

log = logging.getLogger(__name__)

# z float32 (B, nz), labels int64 (B,) or None -> images float (B, C, S, S) in [-1, 1], CPU.
Sampler = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def torch_sampler(g: torch.nn.Module, device: torch.device) -> Sampler:
    """A (conditional) torch generator in eval mode on `device` as a Sampler."""
    def sample(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        with torch.inference_mode():
            y = None if labels is None else labels.to(device)
            return g(z.to(device), y).float().cpu()

    return sample


@dataclass
class Source:
    """A generator to score and what it was trained on."""

    sample: Sampler
    nz: int
    train_config: TrainConfig
    class_names: list[str]  # non-empty for a conditional generator
    about: dict[str, Any] = field(default_factory=dict)  # goes into the report as "source"
    device: str = "cpu"  # where feature extraction runs: beside the generator


def open_source(config: EvalConfig) -> Source:
    """config.source (a run directory, a checkpoint or an .onnx file) as a Source."""
    path = Path(config.source)
    if path.suffix == ".onnx":
        return _onnx_source(path, config.providers)
    return _checkpoint_source(path, config.ema, config.device)


def _checkpoint_source(path: Path, ema: bool, device_name: str) -> Source:
    ckpt = checkpoint.load(path)
    g = checkpoint.build_generator(ckpt, ema=ema)
    device = resolve_device(device_name)
    sample = torch_sampler(g.to(device), device)

    cfg = checkpoint.config_of(ckpt)
    names = list(ckpt.get("class_names", [])) if g.num_classes else []
    about = {"kind": "checkpoint", "path": str(checkpoint.resolve(path)), "step": ckpt["step"],
             "generator": checkpoint.generator_kind(ckpt, ema), "device": str(device)}
    return Source(sample, cfg.nz, cfg, names, about, device.type)


def _onnx_source(path: Path, providers: str) -> Source:
    from gan.model import GeneratorModel  # the serving model's checks and run
    from gan.session import SessionOptions

    model = GeneratorModel(path, SessionOptions(providers=providers, max_batch=250,
                                                opt_batch=250))
    info = model.info

    def sample(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = model.run(z.numpy().astype(np.float32),
                        None if labels is None else labels.numpy().astype(np.int64))
        if info.output == "uint8":  # (B, H, W, C) pixels -> (B, C, H, W) in [-1, 1]
            return torch.from_numpy(pixels_to_unit(out)).permute(0, 3, 1, 2)
        return torch.from_numpy(out)

    cfg = _trained_on(info.metadata, path)
    about = {"kind": "onnx", "path": str(path), "sha256": sha256_file(path),
             "step": int(info.metadata.get("step", 0)),
             "generator": info.metadata.get("generator", "raw"), "provider": model.provider}
    return Source(sample, info.nz, cfg, list(info.class_names), about)


def _trained_on(meta: dict[str, str], path: Path) -> TrainConfig:
    """The data a model was trained on, from its documented metadata keys (dataset, height,
    channels) and, for a folder's location, train_config when the model has it."""
    try:
        saved = json.loads(meta.get("train_config", "{}"))
        return TrainConfig(dataset=meta["dataset"], data_dir=saved.get("data_dir"),
                           image_size=int(meta["height"]), channels=int(meta["channels"]))
    except (KeyError, ValueError, UserError) as e:
        raise UserError(f"{path} does not say which data it was trained on ({e}): export it "
                        "again with `gan export`, or score its checkpoint") from None
