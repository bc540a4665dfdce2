"""A generator model file read with ONNX Runtime alone (no onnx, no torch): checked against its
contract (gan.contract), then run on a session from gan.session.

read_info reads and checks the file; GeneratorModel runs it: `run(z, labels)` -> the raw output
batch. The server (serve.model) and `gan eval` of an ONNX file (quality.sources) both use it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gan.contract import GeneratorInfo, ModelLoadError, model_id, parse_info
from gan.session import SessionOptions, create_session


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
    info = parse_info(path, meta, model_id(path))
    _check_graph(path, probe, info)
    return info


def _check_graph(path: Path, probe: ort.InferenceSession, info: GeneratorInfo) -> None:
    inputs = {i.name: i for i in probe.get_inputs()}
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


class GeneratorModel:
    """A checked generator on an ONNX Runtime session: `run(z, labels)` -> the raw output batch."""

    def __init__(self, path: str | os.PathLike[str], opts: SessionOptions) -> None:
        self.path = Path(path)
        self.info = read_info(self.path)
        session = create_session(self.path, opts)  # warmed up over the batch profile
        self.session = session.session
        self.provider = session.provider

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
