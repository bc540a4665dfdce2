"""Numerical parity: the same latent batches through PyTorch and through ONNX Runtime.

The reference is the float32 PyTorch generator on the CPU (with the uint8 conversion of
`ExportedGenerator` for output="uint8"): the model the checkpoint holds. Differences are absolute,
in output units: values in [-1, 1] for output="float", pixel levels for output="uint8".

Tolerances (max |diff| over every pixel of every batch):
  fp32 float  1e-4      fp32 uint8  1 level   (a float difference can flip one rounding)
  fp16 float  1e-2      fp16 uint8  2 levels  (fp16 keeps 11 significant bits: each weight and
                                               activation is off by up to 2^-11 relative)
Batch independence: every row of every smaller batch must match the same row computed inside the
largest batch, to the same tolerance (a kernel that mixed rows would break dynamic batching).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.onnx import ExportedGenerator
from gan.contract import sha256_file
from gan.errors import UserError
from gan.session import Session, SessionOptions, create_session
from train.model import Generator

log = logging.getLogger(__name__)

TOLERANCES = {
    ("fp32", "float"): 1e-4,
    ("fp32", "uint8"): 1.0,
    ("fp16", "float"): 1e-2,
    ("fp16", "uint8"): 2.0,
}


@dataclass
class BatchParity:
    """PyTorch against ONNX Runtime for one batch size."""

    batch_size: int
    max_abs_diff: float
    mean_abs_diff: float
    passed: bool


@dataclass
class ParityReport:
    """What `gan export --check` proved, written as <model>.parity.json."""

    model: str
    model_sha256: str
    output: str
    precision: str
    unit: str  # "value" (float output, in [-1, 1]) or "level" (uint8 output)
    tolerance: float
    provider: str  # the provider that really ran the model
    requested_provider: str
    seed: int
    batches: list[BatchParity]
    batch_independence_max_abs_diff: float
    passed: bool
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def bound(self) -> str:
        """The tolerance in words: "0.0001 values", "1 level"."""
        return f"{self.tolerance:g} {self.unit}{'' if self.tolerance == 1 else 's'}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def lines(self) -> list[str]:
        """A short human report: one line per batch size, then the verdict."""
        verdict = "PASS" if self.passed else "FAIL"
        out = [f"parity on {self.provider} (asked: {self.requested_provider}), "
               f"{self.precision} {self.output}, tolerance {self.bound}"]
        out += [f"  batch {b.batch_size:>4}: max |diff| {b.max_abs_diff:.3g}  "
                f"mean |diff| {b.mean_abs_diff:.3g}  {'ok' if b.passed else 'FAIL'}"
                for b in self.batches]
        out.append(f"  batch independence: max |diff| {self.batch_independence_max_abs_diff:.3g}")
        out += [f"  note: {n}" for n in self.notes]
        out.append(f"parity {verdict}")
        return out


def reference(generator: Generator, output: str, z: np.ndarray,
              labels: np.ndarray | None = None) -> np.ndarray:
    """The PyTorch float32 result for latents z (B, nz) [and labels (B,) int64]: what the ONNX
    model must reproduce."""
    module = ExportedGenerator(generator.eval(), output).eval()
    with torch.inference_mode():
        y = None if labels is None else torch.from_numpy(labels)
        return module(torch.from_numpy(z), y).numpy()


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # uint8 must be widened first: 3 - 4 wraps to 255 in uint8
    return np.abs(a.astype(np.float64) - b.astype(np.float64))


def check(generator: Generator, model: str | Path, *, output: str, precision: str,
          batch_sizes: tuple[int, ...] = (1, 7, 64), providers: str = "cpu", seed: int = 0,
          cache_dir: str | None = None, tolerance: float = 0.0) -> ParityReport:
    """Run the parity check of `model` (an exported `generator`) and return its report.

    tolerance=0 means the documented bound for (precision, output) in TOLERANCES.
    """
    sizes = tuple(sorted(set(batch_sizes)))
    largest = sizes[-1]
    opts = SessionOptions(providers=providers, max_batch=largest, opt_batch=largest,
                          cache_dir=cache_dir, fp16=precision == "fp16", tf32=False)
    session = create_session(model, opts)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((largest, generator.nz), dtype=np.float32)
    # conditional: every class appears (labels cycle), in a seeded order
    labels = (rng.permutation(np.arange(largest) % generator.num_classes).astype(np.int64)
              if generator.num_classes else None)
    ref = reference(generator, output, z, labels)
    tol = tolerance or TOLERANCES[(precision, output)]

    def run(b: int) -> np.ndarray:
        feed = {"z": z[:b]} if labels is None else {"z": z[:b], "labels": labels[:b]}
        return session.session.run(["images"], feed)[0]

    got = {b: run(b) for b in sizes}
    batches = []
    for b in sizes:
        if got[b].shape != ref[:b].shape or got[b].dtype != ref.dtype:
            raise UserError(f"the ONNX model returned {got[b].dtype} {got[b].shape} for batch "
                            f"{b} where the generator gives {ref.dtype} {ref[:b].shape}: it is "
                            "not this checkpoint's generator")
        d = _abs_diff(got[b], ref[:b])
        batches.append(BatchParity(batch_size=b, max_abs_diff=float(d.max()),
                                   mean_abs_diff=float(d.mean()), passed=bool(d.max() <= tol)))
    independence = max(float(_abs_diff(got[b], got[largest][:b]).max()) for b in sizes)
    passed = all(b.passed for b in batches) and independence <= tol
    return ParityReport(
        model=str(model), model_sha256=sha256_file(Path(model)), output=output,
        precision=precision, unit="value" if output == "float" else "level", tolerance=tol,
        provider=session.provider, requested_provider=providers, seed=seed, batches=batches,
        batch_independence_max_abs_diff=independence, passed=passed,
        notes=_notes(session, model, precision),
        versions={"onnxruntime": ort.__version__, "torch": torch.__version__,
                  "onnx": onnx.__version__},
    )


def _notes(session: Session, model: str | Path, precision: str) -> list[str]:
    notes = []
    if session.fell_back:
        notes.append(f"asked for {session.requested}, but ONNX Runtime ran the model on "
                     f"{session.provider}")
    if precision == "fp16" and session.provider == "cpu" and upcasts_fp16(model):
        notes.append("the CPU provider has no fp16 kernels for this graph: ONNX Runtime casts the "
                     "fp16 weights to float32 and computes in float32, so this run checked the "
                     "fp16 weight rounding, not fp16 arithmetic (check on a GPU: --providers cuda)")
    return notes


def upcasts_fp16(model: str | Path) -> bool:
    """Whether ONNX Runtime's CPU provider runs this model's fp16 ConvTranspose in float32.

    ONNX Runtime inserts Cast-to-float32 nodes around operators that have no fp16 CPU kernel;
    the optimised graph it would run shows them, so this is read, not assumed.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    float_casts = {n.output[0] for n in graph.node if n.op_type == "Cast"
                   and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)}
    return any(n.op_type == "ConvTranspose" and n.input[0] in float_casts for n in graph.node)
