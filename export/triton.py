"""A Triton model repository entry from an exported generator: NAME/config.pbtxt, NAME/1/model.onnx.

The config is for Triton's ONNX Runtime backend (platform "onnxruntime_onnx"). Dims leave out the
batch axis (max_batch_size > 0 makes Triton add it): z is [nz], images [C, H, W] or [H, W, C],
and labels, whose ONNX shape is [batch], is `dims: [1]` with `reshape: { shape: [] }`, Triton's
documented spelling of a batch-only tensor (clients send labels as [batch, 1] there).

Torch-free: the ONNX file is read with `onnx` (no session), the text format is written by hand
(Triton's ModelConfig proto is not a dependency; the tests parse the output with tritonclient's).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from export.config import TritonConfig, TritonExportError
from export.info import load_model
from gan.contract import FORMAT, READABLE_VERSIONS

VERSION = "1"
"""The one model version written: NAME/1/model.onnx."""

QUEUE_DELAY_US = 500
"""dynamic_batching's max_queue_delay_microseconds: half a millisecond lets concurrent requests
share a batch at a small latency cost (Triton's own default, 0, batches only what is queued)."""

_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
          onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.UINT8: "TYPE_UINT8"}


@dataclass(frozen=True)
class Tensor:
    """One graph input or output as Triton sees it: dims without the batch axis."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # the model's own per-item shape when dims differs


def write_repository(config: TritonConfig) -> Path:
    """Write <repo>/<name>/{config.pbtxt, 1/model.onnx}; an existing entry is replaced whole."""
    source = Path(config.model)
    model = load_model(source)
    meta = _contract_metadata(model, source)
    name = config.name or source.stem
    if not name or name in (".", "..") or "/" in name or name.startswith("."):
        raise TritonExportError(f"--name {name!r} cannot be a model folder name")
    text = config_text(config, name, tensors(model, "input"), tensors(model, "output"), meta)
    repo = Path(config.repo)
    repo.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=repo))
    try:
        (tmp / VERSION).mkdir()
        shutil.copyfile(source, tmp / VERSION / "model.onnx")
        (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
        for path in (tmp / VERSION / "model.onnx", tmp / "config.pbtxt"):
            _fsync(path)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a repository is read by the server's user
        _swap_into_place(tmp, repo / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the old entry after a swap, or a failed write
    return repo / name


def _contract_metadata(model: onnx.ModelProto, source: Path) -> dict[str, str]:
    meta = {m.key: m.value for m in model.metadata_props}
    if meta.get("format") != FORMAT:
        raise TritonExportError(f"{source} is an ONNX model but not a dcgan-forge generator "
                                f"(metadata format {meta.get('format')!r}): export one with "
                                "`gan export`")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise TritonExportError(f"{source} has generator format version "
                                f"{meta.get('format_version')!r}; this version reads "
                                f"{', '.join(READABLE_VERSIONS)}: upgrade dcgan-forge")
    return meta


def tensors(model: onnx.ModelProto, kind: str) -> list[Tensor]:
    """The graph's inputs (kind "input", initializers left out) or outputs as Triton tensors."""
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    values = graph.input if kind == "input" else graph.output
    out = []
    for v in values:
        if v.name in weights:
            continue
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if not dims or dims[0] != -1:
            raise TritonExportError(f"{kind} {v.name} has shape {dims}: Triton batching needs a "
                                    "dynamic leading batch axis (re-export with `gan export`)")
        if t.elem_type not in _TYPES:
            raise TritonExportError(f"{kind} {v.name} has ONNX type "
                                    f"{onnx.TensorProto.DataType.Name(t.elem_type)}, which "
                                    "this exporter does not map")
        item = tuple(dims[1:])
        out.append(Tensor(v.name, _TYPES[t.elem_type], item or (1,), None if item else ()))
    return out


def config_text(config: TritonConfig, name: str, inputs: list[Tensor], outputs: list[Tensor],
                meta: dict[str, str]) -> str:
    """Triton's config.pbtxt (protobuf text format of inference.ModelConfig)."""
    lines = [f"name: {_q(name)}", 'platform: "onnxruntime_onnx"',
             f"max_batch_size: {config.max_batch_size}"]
    for key, group in (("input", inputs), ("output", outputs)):
        lines += [f"{key} [", ",\n".join(_tensor(t) for t in group), "]"]
    sizes = preferred_batch_sizes(config.max_batch_size)
    lines += ["dynamic_batching {",
              f"  preferred_batch_size: {_list(sizes)}",
              f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}", "}",
              "instance_group [",
              f"  {{ count: {config.instances} kind: "
              f"{'KIND_GPU' if config.tensorrt else 'KIND_AUTO'} }}", "]"]
    if config.tensorrt:
        lines += _tensorrt(config, name, inputs)
    for key, value in sorted(meta.items()):  # the model's self-description, as in the file
        lines += [f"parameters {{ key: {_q(key)} value: {{ string_value: {_q(value)} }} }}"]
    return "\n".join(lines) + "\n"


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Quarter, half and full max_batch (the sizes worth waiting for), distinct, at least 1."""
    return sorted({max(1, max_batch // 4), max(1, max_batch // 2), max_batch})


def _tensor(t: Tensor) -> str:
    parts = [f"name: {_q(t.name)}", f"data_type: {t.data_type}", f"dims: {_list(t.dims)}"]
    if t.reshape is not None:
        parts.append(f"reshape: {{ shape: {_list(t.reshape)} }}")
    return "  { " + " ".join(parts) + " }"


def _tensorrt(config: TritonConfig, name: str, inputs: list[Tensor]) -> list[str]:
    """ONNX Runtime's TensorRT accelerator: fp16, engine and timing caches, and a batch profile
    1..max_batch_size in the model's own shapes ("z:1x100,labels:1")."""
    cache = f"{config.trt_cache_dir.rstrip('/')}/{name}"

    def shape(b: int) -> str:
        return ",".join(f"{t.name}:{'x'.join(map(str, (b, *_model_dims(t))))}" for t in inputs)
    params = {"precision_mode": "FP16", "max_workspace_size_bytes": str(1 << 30),
              "trt_engine_cache_enable": "1", "trt_engine_cache_path": cache,
              "trt_timing_cache_enable": "1", "trt_timing_cache_path": cache,
              "trt_profile_min_shapes": shape(1),
              "trt_profile_opt_shapes": shape(config.max_batch_size),
              "trt_profile_max_shapes": shape(config.max_batch_size)}
    body = [f"      parameters {{ key: {_q(k)} value: {_q(v)} }}" for k, v in params.items()]
    return ["optimization { execution_accelerators {", "  gpu_execution_accelerator [",
            "    {", '      name: "tensorrt"', *body, "    }", "  ]", "} }"]


def _list(values: tuple[int, ...] | list[int]) -> str:
    return "[ " + ", ".join(map(str, values)) + " ]" if values else "[ ]"


def _model_dims(t: Tensor) -> tuple[int, ...]:
    return t.dims if t.reshape is None else t.reshape


def _q(s: str) -> str:
    """A protobuf text-format string literal: UTF-8 kept, quotes, backslashes and control
    characters escaped (octal, which every protobuf text parser reads)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _swap_into_place(new: Path, entry: Path) -> None:
    """Put the complete folder `new` at `entry`. Linux swaps an existing entry in one step
    (renameat2 RENAME_EXCHANGE), so Triton never sees a missing or half-written model; elsewhere
    the old entry is moved aside first (a crash in between leaves it beside, not lost). The old
    entry ends up at `new`, which the caller removes."""
    if not entry.exists():
        os.rename(new, entry)
        return
    if not entry.is_dir() or entry.is_symlink():
        raise TritonExportError(f"{entry} exists and is not a model folder: move it away first")
    if _exchange(new, entry):
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".old", dir=entry.parent))
    os.rename(entry, aside / entry.name)
    os.rename(new, entry)
    os.rename(aside / entry.name, new)  # so the caller's cleanup removes the old entry
    aside.rmdir()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28 (macOS, musl, ...)
        return False
    at_fdcwd, rename_exchange = -100, 2
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    if not ok and ctypes.get_errno() not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))
    return ok


def summary(entry: Path, config: TritonConfig) -> str:
    """One line for `gan export-triton`."""
    extra = ", TensorRT fp16" if config.tensorrt else ""
    return (f"wrote {entry}/config.pbtxt and {entry}/{VERSION}/model.onnx (max_batch_size "
            f"{config.max_batch_size}, {config.instances} instance(s){extra}); serve it with "
            f"`tritonserver --model-repository {entry.parent}`")

