"""Write a checkpoint's generator as one self-contained, self-describing ONNX file.

Graph contract (what `serve/` and embedding apps rely on):
  input  z       float32 [batch, nz]                 latent ~ N(0, I)
  output images  float32 [batch, C, H, W] in [-1, 1]   (output="float")
                 uint8   [batch, H, W, C] in [0, 255]  (output="uint8", ready-to-show pixels)
The metadata_props (METADATA_KEYS) say all of this in words, so nothing downstream needs torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

import gan
from gan.atomic import atomic_write
from train.model import Generator

log = logging.getLogger(__name__)

FORMAT = "dcgan-forge/generator"
FORMAT_VERSION = "1"
DEFAULT_OPSET = 18
OUTPUTS = ("float", "uint8")


class ExportedGenerator(nn.Module):
    """G with a flat latent input and, for output="uint8", the pixel conversion in the graph."""

    def __init__(self, generator: Generator, output: str) -> None:
        super().__init__()
        self.generator = generator
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.generator(z)  # (B, C, H, W) in [-1, 1]
        if self.output == "float":
            return x
        pixels = torch.round((x.clamp(-1, 1) + 1) * 127.5)  # [0, 255], round half to even
        return pixels.to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, C)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def metadata(config: dict[str, Any], *, output: str, precision: str, opset: int, step: int,
             checkpoint_sha256: str, class_names: list[str] | None = None) -> dict[str, str]:
    """The model's self-description: every value a string (ONNX metadata_props)."""
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
        "precision": precision,
        "train_config": json.dumps(config, sort_keys=True),
        "step": str(step),
        "checkpoint_sha256": checkpoint_sha256,
        "producer": "dcgan-forge",
        "producer_version": gan.__version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "opset": str(opset),
    }


def to_onnx(generator: Generator, *, output: str = "float", opset: int = DEFAULT_OPSET,
            meta: dict[str, str] | None = None) -> onnx.ModelProto:
    """Trace the eval-mode generator with the dynamo exporter; dynamic batch; weights inline."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output kind {output!r}: use float or uint8")
    module = ExportedGenerator(generator.eval(), output).eval()
    z = torch.randn(2, generator.nz)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(
        module, (z,), dynamo=True, opset_version=opset, input_names=["z"],
        output_names=["images"], dynamic_shapes={"z": {0: batch}}, external_data=False,
        optimize=True, verbose=False,
    )
    model = program.model_proto
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    """One .onnx file, weights inside; the old file is replaced only once the new one is whole."""
    atomic_write(path, lambda f: f.write(model.SerializeToString()))
