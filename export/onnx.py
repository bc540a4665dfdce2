"""Write a checkpoint's generator as one self-contained, self-describing ONNX file.

The graph and its metadata_props follow the contract in gan/contract.py (inputs z and, for a
conditional model, labels; output images, float or uint8), so nothing downstream needs torch.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from torch import nn

from export.config import DEFAULT_OPSET, PRECISIONS
from gan.atomic import atomic_write
from gan.contract import OUTPUTS
from train.model import Generator

log = logging.getLogger(__name__)


class ExportedGenerator(nn.Module):
    """G with a flat latent input and, for output="uint8", the pixel conversion in the graph.

    precision="fp16" holds a half-precision copy of G between two casts, so the graph's weights
    and arithmetic are fp16 while its input and output keep the float32/uint8 contract.
    """

    def __init__(self, generator: Generator, output: str, precision: str = "fp32") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown output kind {output!r}: use float or uint8")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: use fp32 or fp16")
        self.generator = copy.deepcopy(generator).half() if precision == "fp16" else generator
        self.output = output
        self.precision = precision

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.precision == "fp16":
            x = self.generator(z.half(), labels).float()  # fp16 inside, float32 (B, C, H, W) out
        else:
            x = self.generator(z, labels)  # (B, C, H, W) in [-1, 1]
        if self.output == "float":
            return x
        pixels = torch.round((x.clamp(-1, 1) + 1) * 127.5)  # [0, 255], round half to even
        return pixels.to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, C)


DOC = ("DCGAN generator (dcgan-forge). Input z: float32 [batch, nz], z ~ N(0, I). Output images: "
       "see metadata_props output/layout/value_range. Read metadata_props for nz and the shape.")


def to_onnx(generator: Generator, *, output: str = "float", opset: int = DEFAULT_OPSET,
            precision: str = "fp32", meta: dict[str, str] | None = None) -> onnx.ModelProto:
    """Trace the eval-mode generator with the dynamo exporter; dynamic batch; weights inline;
    `meta` and the exporting tools' versions as metadata_props.

    Eval mode turns BatchNorm into constants that the exporter's optimiser folds into the
    transposed convolutions: the graph is Unsqueeze, (ConvTranspose, Relu) x L-1,
    ConvTranspose, Tanh, plus the pixel conversion for output="uint8".
    """
    module = ExportedGenerator(generator.eval(), output, precision).eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    args: tuple[torch.Tensor, ...] = (torch.randn(2, generator.nz),)
    names, shapes = ["z"], {"z": {0: batch}}
    if generator.num_classes:  # one label per row, sharing z's batch dimension
        args += (torch.zeros(2, dtype=torch.int64),)
        names.append("labels")
        shapes["labels"] = {0: batch}
    with _quiet("onnx_ir", "onnxscript"), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        # z and labels share one batch Dim on purpose; the exporter says so in a UserWarning
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints")
        program = torch.onnx.export(
            module, args, dynamo=True, opset_version=opset, input_names=names,
            output_names=["images"], dynamic_shapes=shapes, external_data=False,
            optimize=True, verbose=False,
        )
    assert program is not None  # dynamo=True with no file returns the program
    model = program.model_proto
    model.doc_string = DOC
    tools = {"torch_version": torch.__version__, "onnx_version": onnx.__version__}
    for key, value in {**(meta or {}), **tools}.items():  # meta: gan.contract.metadata
        model.metadata_props.add(key=key, value=value)
    external = [t.name for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:  # the contract is one file; an exporter change must not split it silently
        raise RuntimeError(f"exporter left weights outside the model: {external[:3]}")
    onnx.checker.check_model(model, full_check=True)
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Hold the exporter's pass-by-pass INFO logs (and its stdout progress lines) back."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    """One .onnx file, weights inside; the old file is replaced only once the new one is whole."""
    atomic_write(path, lambda f: f.write(model.SerializeToString()))
