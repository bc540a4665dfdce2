"""`gan eval`: score the generator of a run, a checkpoint or an exported ONNX model.

Either source becomes a sampler, z (B, nz) [, labels (B,)] -> images (B, C, S, S) in [-1, 1],
that `train.evaluation.evaluate` scores against the dataset's real test split. An ONNX model is
scored through ONNX Runtime, exactly as it will be served (uint8 models are mapped back to
[-1, 1]), and its metadata alone says which dataset, size and classes it has.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.config import EvalConfig
from gan.atomic import atomic_write
from gan.contract import sha256_file
from gan.errors import UserError
from train import checkpoint
from train.config import TrainConfig
from train.distributed import resolve_device
from train.evaluation import Sampler

log = logging.getLogger(__name__)



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
    path = Path(config.source)
    if path.suffix == ".onnx":
        return _onnx_source(path, config.providers)
    return _checkpoint_source(path, config.ema, config.device)


def _checkpoint_source(path: Path, ema: bool, device_name: str) -> Source:
    from train.evaluation import torch_sampler

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
    from serve.model import read_info
    from serve.providers import SessionOptions, create_session

    info = read_info(path)
    session = create_session(path, SessionOptions(providers=providers, max_batch=250,
                                                  opt_batch=250))

    def sample(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        feed = {"z": z.numpy().astype(np.float32)}
        if labels is not None:
            feed["labels"] = labels.numpy().astype(np.int64)
        out = session.session.run(["images"], feed)[0]
        if info.output == "uint8":  # (B, H, W, C) pixels -> (B, C, H, W) in [-1, 1]
            return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return torch.from_numpy(out)

    cfg = _trained_on(info.metadata, path)
    about = {"kind": "onnx", "path": str(path), "sha256": sha256_file(path),
             "step": int(info.metadata.get("step", 0)),
             "generator": info.metadata.get("generator", "raw"), "provider": session.provider}
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


def default_out(source: str) -> Path:
    """eval.json in a run directory, else <name>.eval.json beside the file."""
    p = Path(source)
    return p / "eval.json" if p.is_dir() else p.with_suffix(".eval.json")


# JSON files that other commands own: a run's config, export's parity reports.
_NOT_REPORTS = ("config.json", ".parity.json", ".parity-failed.json")


def report_out(config: EvalConfig) -> Path:
    """Where the report goes: --out, or the default beside the source. Anything that is not a
    .json report of its own (a model, a checkpoint, the source, a run's files) is refused, before
    any scoring, as `gan export` refuses an --out that is not .onnx."""
    out = Path(config.out) if config.out else default_out(config.source)
    source = Path(config.source)
    if out.suffix != ".json":
        raise UserError(f"--out {out} must end in .json (the report is JSON; it never replaces "
                        "a model, a checkpoint or a run's files)")
    if out.name.endswith(_NOT_REPORTS) or (source.exists() and out.exists()
                                           and out.samefile(source)):
        raise UserError(f"--out {out} is the source or a file another command owns: name "
                        "another .json file")
    return out


def run(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    """Score config.source; returns the report and where it was written."""
    from train.evaluation import evaluate
    from train.features import make_features

    out = report_out(config)
    source = open_source(config)
    cfg = source.train_config
    data_dir = config.data_dir or cfg.data_dir
    features = make_features(config.features, dataset=cfg.dataset, data_dir=data_dir,
                             image_size=cfg.image_size, channels=cfg.channels,
                             inception_weights=config.inception_weights,
                             device=source.device)
    log.info("scoring %d images of %s with %s features", config.num_images, config.source,
             config.features)
    report = evaluate(source.sample, nz=source.nz, dataset=cfg.dataset, data_dir=data_dir,
                      image_size=cfg.image_size, channels=cfg.channels, n=config.num_images,
                      features=features, class_names=source.class_names, seed=config.seed)
    report = {"source": source.about, **report}
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out, lambda f: f.write(text.encode()))
    return report, out
