"""The export configurations, ExportConfig and TritonConfig: typed, one docstring per field.

`gan export` only overrides these defaults. No torch import here: `gan --help` stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gan.choices import PROVIDERS, check_choices
from gan.contract import OUTPUTS
from gan.errors import UserError

PRECISIONS = ("fp32", "fp16")

MIN_OPSET = 18
DEFAULT_OPSET = 18  # the widest support: ONNX Runtime (Python, Node), TensorRT 8.6 and newer


class ExportConfigError(UserError):
    """An export setting that cannot work."""


@dataclass(kw_only=True)
class ExportConfig:
    """Everything that defines one export of a checkpoint's generator."""

    checkpoint: str
    """A training checkpoint (.pt), or a run directory meaning its checkpoints/last.pt."""
    out: str = "model.onnx"
    """Where to write the ONNX model (one self-contained file); the parity report goes beside it
    as <name>.parity.json."""
    opset: int = DEFAULT_OPSET
    """ONNX opset to export to (18 or newer; 18 runs on every current ONNX Runtime)."""
    output: str = "float"
    """Output kind: float (images float32 [batch, C, H, W] in [-1, 1]) or uint8 (ready-to-show
    pixels [batch, H, W, C], computed inside the graph)."""
    precision: str = "fp32"
    """Weight precision: fp32, or fp16 (half the file size; input and output stay float32/uint8;
    checked against a looser parity bound)."""
    check: bool = True
    """Run the parity check (PyTorch against ONNX Runtime) before the model replaces --out."""
    batch_sizes: tuple[int, ...] = (1, 7, 64)
    """Batch sizes of the parity check, comma-separated (include 1 and an odd size)."""
    providers: str = "cpu"
    """Execution provider of the parity check: cpu, cuda, tensorrt, or auto (the best that
    really loads here)."""
    seed: int = 0
    """Seed of the parity check's latent batches."""
    ema: bool = True
    """Export the EMA generator (the moving average of G's weights) when the checkpoint has one;
    --no-ema exports the raw generator."""
    tolerance: float = 0.0
    """Parity bound on max |diff| (values for float output, levels for uint8); 0 means the
    documented default: fp32 1e-4 or 1 level, fp16 1e-2 or 2 levels."""
    extra: dict[str, str] = field(default_factory=dict)
    """Extra metadata_props to write into the model (key -> value)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ExportConfigError with one clear line for the first value that cannot work."""
        check_choices(self, {"output": OUTPUTS, "precision": PRECISIONS,
                             "providers": PROVIDERS}, ExportConfigError)
        if self.opset < MIN_OPSET:
            raise ExportConfigError(f"opset {self.opset} is too old: use {MIN_OPSET} or newer")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ExportConfigError("batch sizes must be positive integers, e.g. 1,7,64")
        if self.tolerance < 0:
            raise ExportConfigError(f"tolerance must not be negative, got {self.tolerance}")
        if not self.out.endswith(".onnx"):
            raise ExportConfigError(f"--out {self.out!r} must end in .onnx")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'1,7,64' -> (1, 7, 64); anything else is one clear error."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ExportConfigError(f"bad --batch-sizes {text!r}: give positive integers separated "
                                "by commas, e.g. 1,7,64") from None
    if not sizes or any(b < 1 for b in sizes):
        raise ExportConfigError(f"bad --batch-sizes {text!r}: give positive integers separated "
                                "by commas, e.g. 1,7,64")
    return tuple(sorted(set(sizes)))


class TritonExportError(UserError):
    """A model or setting that cannot make a Triton repository entry."""


@dataclass(kw_only=True)
class TritonConfig:
    """One Triton model repository entry for an exported generator."""

    model: str
    """The ONNX model written by `gan export`."""
    repo: str = "models"
    """The Triton model repository folder (created if missing); the entry is <repo>/<name>/."""
    name: str | None = None
    """Model name in the repository (default: the model file's stem)."""
    max_batch_size: int = 64
    """Largest batch Triton forms (and the top of the TensorRT profile)."""
    tensorrt: bool = False
    """Run on ONNX Runtime's TensorRT accelerator with fp16 kernels and an engine cache (needs
    an NVIDIA GPU: the instances become KIND_GPU)."""
    instances: int = 1
    """Model instances (parallel copies) Triton runs; KIND_AUTO: one set per GPU, else on CPU."""
    trt_cache_dir: str = "/tmp/tensorrt-cache"
    """TensorRT only: engine and timing cache folder on the Triton machine (<dir>/<name>)."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "instances"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise TritonExportError(f"{flag} must be at least 1, got {getattr(self, name)}")
