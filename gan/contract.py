"""The generator model file's contract, shared by its writer (export) and its readers (serve,
quality, `gan info`): the graph's inputs and outputs, the metadata_props keys, and their parsing.

Graph contract (what `serve/` and embedding apps rely on):
  input  z       float32 [batch, nz]                 latent ~ N(0, I)
  input  labels  int64   [batch]                     conditional models only: class index in
                                                     [0, len(class_names)), one per image
  output images  float32 [batch, C, H, W] in [-1, 1]   (output="float")
                 uint8   [batch, H, W, C] in [0, 255]  (output="uint8", ready-to-show pixels)
The metadata_props (see `metadata`) say all of this in words, so nothing downstream needs torch.
Torch-free and onnxruntime-free on purpose: the serving install and `gan info` import it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gan
from gan.errors import UserError

FORMAT = "dcgan-forge/generator"
"""metadata_props["format"] of every exported generator."""
FORMAT_VERSION = "1"
"""metadata_props["format_version"] written by this version."""
READABLE_VERSIONS = ("1",)
"""Format versions this version can serve."""
OUTPUTS = ("float", "uint8")
"""Output kinds: float (B, C, H, W) in [-1, 1], or uint8 pixels (B, H, W, C)."""
REQUIRED = ("nz", "height", "width", "channels", "output")
"""metadata_props keys a reader cannot do without."""


class ModelLoadError(UserError):
    """The model file is missing, not ONNX, or not a dcgan-forge generator."""


@dataclass(frozen=True)
class GeneratorInfo:
    """What the ONNX file says about itself."""

    model_id: str  # "sha256:" + the first 16 hex digits of the file's SHA-256
    nz: int
    height: int
    width: int
    channels: int
    output: str  # "float" (B, C, H, W) in [-1, 1] or "uint8" (B, H, W, C)
    dataset: str
    class_names: list[str] = field(default_factory=list)  # label order; empty: unconditional
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        """Whether the model takes a class label per image (its `labels` input)."""
        return bool(self.class_names)

    def image_bytes(self, fmt: str) -> int:
        """Size of one image's data in `fmt`; for PNG an upper bound (stored blocks + headers)."""
        pixels = self.height * self.width * self.channels
        if fmt == "raw_float32":
            return 4 * pixels
        return pixels if fmt == "raw_uint8" else pixels + self.height * 8 + 1024


def metadata(config: dict[str, Any], *, output: str, precision: str, opset: int, step: int,
             checkpoint_sha256: str, class_names: list[str] | None = None,
             generator: str = "raw") -> dict[str, str]:
    """The model's self-description: every value a string (ONNX metadata_props).

    class_names is non-empty exactly for a conditional model (it then has the `labels` input);
    generator says which weights were exported: "ema" (the moving average) or "raw". The
    exporter adds the versions of its tools (torch_version, onnx_version).
    """
    size, channels = config["image_size"], config["channels"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nz": str(config["nz"]),
        "height": str(size),
        "width": str(size),
        "channels": str(channels),
        "output": output,
        "layout": "NCHW" if output == "float" else "NHWC",
        "value_range": "[-1, 1]" if output == "float" else "[0, 255]",
        "latent": "standard_normal",
        "dataset": config["dataset"],
        "class_names": json.dumps(class_names or []),
        "conditional": "true" if class_names else "false",
        "generator": generator,
        "precision": precision,
        "train_config": json.dumps(config, sort_keys=True),
        "step": str(step),
        "checkpoint_sha256": checkpoint_sha256,
        "producer": "dcgan-forge",
        "producer_version": gan.__version__,
        "opset": str(opset),
    }


def parse_info(path: Path, meta: Mapping[str, str], model_id: str) -> GeneratorInfo:
    """A file's metadata_props -> GeneratorInfo; ModelLoadError (one line naming `path`) for a
    foreign, newer, incomplete or inconsistent description. The graph itself is checked by
    `gan.model.read_info`."""
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{path} is an ONNX model but not a dcgan-forge generator (its "
                             f"metadata format is {meta.get('format')!r}, expected {FORMAT!r}): "
                             "export one with `gan export`")
    if meta.get("format_version") not in READABLE_VERSIONS:
        version = meta.get("format_version")
        raise ModelLoadError(f"{path} has generator format version {version!r}; this server "
                             f"reads {', '.join(READABLE_VERSIONS)}: upgrade dcgan-forge")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ModelLoadError(f"{path} lacks generator metadata {missing}: re-export it with "
                             "`gan export`")
    try:
        info = GeneratorInfo(
            model_id=model_id, nz=int(meta["nz"]), height=int(meta["height"]),
            width=int(meta["width"]), channels=int(meta["channels"]), output=meta["output"],
            dataset=meta.get("dataset", ""),
            class_names=_class_names(meta.get("class_names", "[]")), metadata=dict(meta))
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{path} has malformed generator metadata ({e}): re-export it "
                             "with `gan export`") from None
    if info.output not in OUTPUTS:
        raise ModelLoadError(f"{path} has unknown output kind {info.output!r} (float or uint8)")
    flag = info.metadata.get("conditional")  # absent in files exported before it existed
    if flag is not None and flag != str(info.conditional).lower():
        raise ModelLoadError(f"{path} says conditional={flag!r} but has "
                             f"{len(info.class_names)} class names: re-export it with `gan export`")
    return info


def _class_names(text: str) -> list[str]:
    """metadata class_names (a JSON list of distinct, non-empty strings) -> the list."""
    names = json.loads(text)
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"class_names must be a JSON list of non-empty strings, got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    return names


def pixels_to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1], same layout (a uint8 model's output back
    in the float model's value range)."""
    return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_id(path: Path) -> str:
    """The id a server reports for a model file: "sha256:" and 16 hex digits."""
    return "sha256:" + sha256_file(path)[:16]
