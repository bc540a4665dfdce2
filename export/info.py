"""What an exported model says about itself: metadata_props, inputs and outputs, size.

`gan info` prints this; it reads the file with `onnx`, and checks it against the generator contract
with the same ONNX Runtime probe that `gan serve` runs (no torch).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from gan.contract import FORMAT, sha256_file
from gan.errors import UserError


def _tensor(value: onnx.ValueInfoProto) -> dict[str, Any]:
    t = value.type.tensor_type
    shape = [d.dim_param or d.dim_value for d in t.shape.dim]
    return {"name": value.name, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            "shape": shape}


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-ready description of the model at `path`; "problem" says why it is not a generator
    `gan serve` would serve (None when it is one).

    Raises UserError for a file that is no valid ONNX model, or one whose metadata says it is a
    dcgan-forge generator when its graph is not (a broken or fake model: nothing worth showing).
    """
    p = Path(path)
    model = load_model(p)
    meta = {m.key: m.value for m in model.metadata_props}
    problem = contract_problem(p)
    if problem is not None and meta.get("format") == FORMAT:
        raise UserError(problem)
    graph = model.graph
    params = sum(math.prod(t.dims) for t in graph.initializer)  # works without external data
    init_names = {t.name for t in graph.initializer}
    return {
        "path": str(p),
        "size_bytes": p.stat().st_size,
        "sha256": sha256_file(p),
        "dcgan_forge": problem is None,
        "problem": problem,
        "ir_version": model.ir_version,
        "opsets": {op.domain or "ai.onnx": op.version for op in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "parameters": params,
        "inputs": [_tensor(v) for v in graph.input if v.name not in init_names],
        "outputs": [_tensor(v) for v in graph.output],
        "operators": sorted({n.op_type for n in graph.node}),
        "metadata": meta,
        "parity": parity_of(p),
    }


def parity_of(model: Path) -> dict[str, Any] | None:
    """The verdict of <name>.parity.json when it belongs to this very file (same sha256)."""
    report = model.with_suffix(".parity.json")
    try:
        r = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(r, dict) or r.get("model_sha256") != sha256_file(model):
        return None
    worst = max((b["max_abs_diff"] for b in r.get("batches", [])), default=None)
    return {"report": str(report), "passed": r.get("passed"), "provider": r.get("provider"),
            "max_abs_diff": worst, "unit": r.get("unit"), "tolerance": r.get("tolerance")}


def contract_problem(path: Path) -> str | None:
    """Why `gan serve` would refuse the model at `path` (its one-line error), or None."""
    from gan.contract import ModelLoadError
    from gan.model import read_info

    try:
        read_info(path)
    except ModelLoadError as e:
        return str(e)
    return None


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """A valid ONNX file, or one clear error for a missing, foreign or empty file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no model at {p}: export one with `gan export CHECKPOINT --out {p}`")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends for a foreign file
        raise UserError(f"{p} is not an ONNX model ({type(e).__name__})") from e
    try:  # protobuf parses an empty file (or many a short one) as an empty model
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        reason = " ".join(str(e).split())[:200]
        raise UserError(f"{p} is not a valid ONNX model ({reason})") from None
    return model
