"""Build an ONNX Runtime session from a provider choice, and report the provider that really runs.

The one session factory of the project: `gan serve` uses it, and so do `gan export`'s parity
checks, `gan eval` of ONNX files and the benchmarks (it imports only onnxruntime and numpy, so the
torch-free serving install keeps it). onnxruntime-gpu lists the TensorRT and CUDA providers even
on machines where their libraries cannot load; ONNX Runtime then falls back quietly, so the truth
is read back from `session.get_providers()` after the session is built, never assumed from the
request.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gan.choices import PROVIDERS, check_choice
from gan.errors import UserError

log = logging.getLogger(__name__)

_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_SHORT = {v: k for k, v in _NAMES.items()}


class ProviderError(UserError):
    """The requested execution provider cannot run on this machine."""


@dataclass(kw_only=True)
class SessionOptions:
    """How to build a session for a generator model."""

    providers: str = "auto"
    """auto (TensorRT, then CUDA, then CPU: the first that really loads), tensorrt, cuda or cpu."""
    fp16: bool = False
    """TensorRT only: let TensorRT build fp16 kernels."""
    max_batch: int = 64
    """Largest batch the session will see: the top of TensorRT's optimisation profile."""
    opt_batch: int = 0
    """TensorRT's tuned batch size (0: the same as max_batch)."""
    cache_dir: str | None = None
    """TensorRT engine and timing caches (default: <model>.trt-cache/ beside the model), so a
    restart reuses the engine instead of rebuilding it."""
    intra_op_threads: int = 0
    """CPU threads of one inference call (0: ONNX Runtime's default, one per core)."""
    tf32: bool = True
    """CUDA only: let float32 convolutions use TF32 tensor-core math (ONNX Runtime's default;
    parity checks turn it off so that fp32 is checked at fp32 accuracy)."""
    warm_every_batch: bool = False
    """CUDA only: warm up with every batch size 1..max_batch, not just the profile's. The CUDA
    provider runs cuDNN's exhaustive algorithm search on the first run of each new input shape;
    a server whose batches vary in size would otherwise pay it on live requests (see
    docs/benchmarks.md). The server turns it on."""


@dataclass
class Session:
    """An ONNX Runtime session and what it really runs on."""

    session: ort.InferenceSession
    provider: str  # "tensorrt", "cuda" or "cpu": the provider that runs the graph
    requested: str

    @property
    def fell_back(self) -> bool:
        return self.requested not in ("auto", self.provider)


def wanted(choice: str) -> list[str]:
    """The providers to try for `choice`, best first; ProviderError (one line) if it cannot run
    here. Cheap (no session): callers check a choice before slow work."""
    check_choice("provider", choice, PROVIDERS, ProviderError)
    order = ["tensorrt", "cuda", "cpu"]
    start = 0 if choice == "auto" else order.index(choice)
    available = set(ort.get_available_providers())
    if choice == "auto" and not has_nvidia_device():
        available &= {_NAMES["cpu"]}  # skip the GPU providers' noisy failed loads on CPU machines
    names = [p for p in order[start:] if _NAMES[p] in available]
    if choice != "auto" and choice != "cpu" and _NAMES[choice] not in available:
        raise ProviderError(f"provider {choice} is not in this onnxruntime build "
                            f"(it has {', '.join(sorted(_SHORT.get(a, a) for a in available))}); "
                            "install onnxruntime-gpu on a machine with CUDA")
    if choice in ("cuda", "tensorrt") and not has_nvidia_device():
        raise ProviderError(f"provider {choice} needs an NVIDIA GPU and this machine has none "
                            "(no NVIDIA driver found): use --providers cpu or auto")
    return names


def has_nvidia_device() -> bool:
    """Whether the NVIDIA driver exposes a device here (cheap: no CUDA library is loaded)."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def _provider_options(name: str, model: Path, inputs: list[Any], nz: int,
                      opts: SessionOptions) -> dict[str, Any]:
    if name == "cuda":
        return {"use_tf32": int(opts.tf32)}
    if name != "tensorrt":
        return {}
    cache = Path(opts.cache_dir) if opts.cache_dir else model.with_suffix(".trt-cache")
    cache.mkdir(parents=True, exist_ok=True)
    opt_batch = opts.opt_batch or opts.max_batch

    def shape(b: int) -> str:  # TensorRT's "name:dims,name:dims" syntax
        return ",".join(f"{name}:{'x'.join(map(str, dims))}"
                        for name, (dims, _) in _input_shapes(inputs, b, nz).items())
    return {
        "trt_fp16_enable": opts.fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": shape(1),
        "trt_profile_opt_shapes": shape(opt_batch),
        "trt_profile_max_shapes": shape(opts.max_batch),
    }


def create_session(model: str | Path, opts: SessionOptions | None = None) -> Session:
    """A session on the best provider that really loads, warmed up over the batch profile."""
    opts = opts or SessionOptions()
    model = Path(model)
    tried = wanted(opts.providers)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if opts.intra_op_threads:
        so.intra_op_num_threads = opts.intra_op_threads
    if tried == ["cpu"]:
        session = ort.InferenceSession(str(model), sess_options=so,
                                       providers=["CPUExecutionProvider"])
        nz = _nz(session.get_inputs())
    else:
        # TensorRT's profile names the inputs: read them from an unoptimised (cheap) CPU session.
        cheap = ort.SessionOptions()
        cheap.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        inputs = ort.InferenceSession(str(model), sess_options=cheap,
                                      providers=["CPUExecutionProvider"]).get_inputs()
        nz = _nz(inputs)
        providers = [(_NAMES[p], _provider_options(p, model, inputs, nz, opts)) for p in tried]
        # ONNX Runtime prints its "EP Error ... Falling back" banner with print(): keep it off
        # stdout, which carries results (the server's address line, benchmarks' JSON).
        with contextlib.redirect_stdout(sys.stderr):
            session = ort.InferenceSession(str(model), sess_options=so, providers=providers)
    actual = _SHORT.get(session.get_providers()[0], session.get_providers()[0])
    result = Session(session=session, provider=actual, requested=opts.providers)
    judge(result)
    warm_up(result, nz, opts)
    log.info("ONNX Runtime session on %s (asked: %s)", actual, opts.providers)
    return result


def _input_shapes(inputs: list[Any], b: int, nz: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Each graph input's shape and dtype at batch b: z (b, nz) float32, labels (b,) int64."""
    return {i.name: ((b, nz), np.float32) if i.name == "z" else ((b,), np.int64)
            for i in inputs}


def _nz(inputs: list[Any]) -> int:
    """The latent size: z's second dimension (inputs may come in any order)."""
    z = next((i for i in inputs if i.name == "z"), inputs[0])
    return int(z.shape[1])


def judge(session: Session) -> None:
    """Accept what ONNX Runtime really built, or say in one line why it is not what was asked.

    A GPU request that ends on the CPU is an error (the user asked for a GPU and would silently
    get a slower machine); TensorRT ending on CUDA (libnvinfer missing, say) is a warning: the
    model still runs on the GPU, and the warning and `Session.provider` say so.
    """
    if not session.fell_back:
        return
    if session.provider == "cpu":
        raise ProviderError(f"provider {session.requested} did not load on this machine "
                            "(ONNX Runtime fell back to CPU): see its log above for why")
    log.warning("asked for %s, but ONNX Runtime runs the model on %s (%s did not load: for "
                "TensorRT, check that libnvinfer is installed)",
                session.requested, session.provider, session.requested)


def warm_up(session: Session, nz: int, opts: SessionOptions) -> None:
    """Run the profile's batch sizes once (every size up to max_batch on CUDA with
    warm_every_batch), so no engine is built or tuned while serving."""
    inputs = session.session.get_inputs()  # z, and labels for a conditional model
    sizes = sorted({1, opts.opt_batch or opts.max_batch, opts.max_batch})
    if session.provider == "cuda" and opts.warm_every_batch:
        sizes = list(range(1, opts.max_batch + 1))
    for b in sizes:
        session.session.run(None, {name: np.zeros(dims, dtype) for name, (dims, dtype)
                                   in _input_shapes(inputs, b, nz).items()})
