"""The served generator: an ONNX file from `gan export`, checked against its contract, on a session.

Contract (export/onnx.py): input z float32 [batch, nz], and for a conditional model input labels
int64 [batch] (class index per image); output images float32 [batch, C, H, W] in [-1, 1]
(output=float) or uint8 [batch, H, W, C] (output=uint8); metadata_props describe it ("format" is
"dcgan-forge/generator"; "class_names" is a JSON list, non-empty exactly for conditional models).
The model is read with ONNX Runtime alone (no onnx, no torch), so the serving install stays small.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gan.contract import FORMAT, READABLE_VERSIONS, sha256_file
from gan.errors import UserError
from serve.providers import SessionOptions, create_session

log = logging.getLogger(__name__)

_REQUIRED = ("nz", "height", "width", "channels", "output")


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


def default_threads() -> int:
    """Cores this process may run on (respects taskset and container CPU sets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def model_id(path: Path) -> str:
    return "sha256:" + sha256_file(path)[:16]


def read_info(path: str | os.PathLike[str]) -> GeneratorInfo:
    """Check that `path` is a dcgan-forge generator and read its self-description."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model {path} does not exist: pass an ONNX file written by "
                             "`gan export`")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4  # the one-line error below says it all
    try:
        probe = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises InvalidProtobuf, Fail, ... (none share a base but this)
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path} is not a loadable ONNX model ({reason}): pass a file "
                             "written by `gan export`") from None
    meta = dict(probe.get_modelmeta().custom_metadata_map)
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{path} is an ONNX model but not a dcgan-forge generator (its "
                             f"metadata format is {meta.get('format')!r}, expected {FORMAT!r}): "
                             "export one with `gan export`")
    if meta.get("format_version") not in READABLE_VERSIONS:
        version = meta.get("format_version")
        raise ModelLoadError(f"{path} has generator format version {version!r}; this server "
                             f"reads {', '.join(READABLE_VERSIONS)}: upgrade dcgan-forge")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ModelLoadError(f"{path} lacks generator metadata {missing}: re-export it with "
                             "`gan export`")
    try:
        info = GeneratorInfo(
            model_id=model_id(path), nz=int(meta["nz"]), height=int(meta["height"]),
            width=int(meta["width"]), channels=int(meta["channels"]), output=meta["output"],
            dataset=meta.get("dataset", ""),
            class_names=_class_names(meta.get("class_names", "[]")), metadata=meta)
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{path} has malformed generator metadata ({e}): re-export it "
                             "with `gan export`") from None
    _check_graph(path, probe, info)
    return info


def _class_names(text: str) -> list[str]:
    """metadata class_names (a JSON list of distinct, non-empty strings) -> the list."""
    names = json.loads(text)
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"class_names must be a JSON list of non-empty strings, got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    return names


def _check_graph(path: Path, probe: ort.InferenceSession, info: GeneratorInfo) -> None:
    inputs = {i.name: i for i in probe.get_inputs()}
    if info.output not in ("float", "uint8"):
        raise ModelLoadError(f"{path} has unknown output kind {info.output!r} (float or uint8)")
    flag = info.metadata.get("conditional")  # absent in files exported before it existed
    if flag is not None and flag != str(info.conditional).lower():
        raise ModelLoadError(f"{path} says conditional={flag!r} but has "
                             f"{len(info.class_names)} class names: re-export it with `gan export`")
    want = ["z", "labels"] if info.conditional else ["z"]
    if sorted(inputs) != sorted(want):
        kind = (f"conditional ({len(info.class_names)} class names)" if info.conditional
                else "unconditional (no class names)")
        raise ModelLoadError(f"{path} has inputs {sorted(inputs)}, but its metadata says it is "
                             f"{kind}, which takes {want}: re-export it with `gan export`")
    z = inputs["z"]
    if z.type != "tensor(float)" or len(z.shape) != 2 or z.shape[1] != info.nz:
        raise ModelLoadError(f"{path}: input {z.name} is {z.type} {z.shape}, expected float "
                             f"[batch, {info.nz}] as its metadata says")
    labels = inputs.get("labels")
    if labels is not None:
        if labels.type != "tensor(int64)" or len(labels.shape) != 1:
            raise ModelLoadError(f"{path}: input labels is {labels.type} {labels.shape}, "
                                 "expected int64 [batch] (one class index per image)")
        _check_classes(path, probe, info)
    _check_output(path, probe, info)


def _check_classes(path: Path, probe: ort.InferenceSession, info: GeneratorInfo) -> None:
    """The last class index runs: the label embedding has a row for every class name (a model
    with more names than rows would fail whole batches later, on valid-looking labels)."""
    last = len(info.class_names) - 1
    try:
        probe.run(None, {"z": np.zeros((1, info.nz), np.float32),
                         "labels": np.array([last], np.int64)})
    except Exception as e:  # ORT's Gather: "indices element out of data bounds"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path} names {len(info.class_names)} classes but fails on label "
                             f"{last} ({reason}): re-export it with `gan export`") from None


def _check_output(path: Path, probe: ort.InferenceSession, info: GeneratorInfo) -> None:
    images = probe.get_outputs()[0]
    want = "tensor(float)" if info.output == "float" else "tensor(uint8)"
    if images.type != want or len(images.shape) != 4:
        raise ModelLoadError(f"{path}: output {images.name} is {images.type} {images.shape}, "
                             f"expected a 4-d {want} for output={info.output}")


class ServedModel:
    """A checked generator on an ONNX Runtime session: `run(z, labels)` -> the raw output batch."""

    def __init__(self, path: str | os.PathLike[str], *, providers: str = "cpu",
                 max_batch: int = 64, intra_op_threads: int = 0, fp16: bool = False,
                 cache_dir: str | None = None) -> None:
        self.path = Path(path)
        self.info = read_info(self.path)
        opts = SessionOptions(providers=providers, fp16=fp16, max_batch=max_batch,
                              cache_dir=cache_dir, warm_every_batch=True,
                              intra_op_threads=intra_op_threads or default_threads())
        session = create_session(self.path, opts)  # warmed up over the batch profile
        self.session = session.session
        self.provider = session.provider
        log.info("model %s (%s, %dx%dx%d, nz %d) on %s", self.path, self.info.model_id,
                 self.info.height, self.info.width, self.info.channels, self.info.nz,
                 self.provider)

    def run(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """z (B, nz) float32 [, labels (B,) int64 for a conditional model, each in [0, classes)]
        -> images (B, C, H, W) float32 or (B, H, W, C) uint8.

        Labels must be in range (callers validate them: ONNX Runtime's Gather would fail the
        whole batch on one bad index)."""
        if (labels is not None) != self.info.conditional:
            raise ValueError("labels (B,) int64 are required for a conditional model and "
                             "refused for an unconditional one")
        feed = {"z": z} if labels is None else {"z": z, "labels": labels}
        return self.session.run(None, feed)[0]
