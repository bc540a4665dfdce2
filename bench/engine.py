"""Generator throughput: PyTorch eager against ONNX Runtime (CPU, and CUDA/TensorRT when present).

    PYTHONPATH=. python bench/engine.py            # the full run, JSON on stdout
    PYTHONPATH=. python bench/engine.py --quick    # a smoke run: small batches, short timings

For the 32x32 default generator (nz 100, ngf 64, 1 channel) and the 64x64 textbook one (nz 100,
ngf 64, 3 channels, as in the PyTorch DCGAN tutorial), with DCGAN-initialised weights and
BatchNorm statistics from one training-mode pass (throughput does not depend on training). Each
figure is the median over timed repetitions after warm-up. The same run measures the machine's
fp32 matrix-multiply rate (torch.matmul, n=2048) and reports each engine's achieved GFLOP/s (the
generator's transposed-convolution FLOPs, counted from its layer shapes) as a fraction of it.
Engines that cannot run here (no GPU, no TensorRT) are reported as skipped with the reason.
ONNX Runtime figures are end to end from NumPy (on a GPU: host-to-device copies included), the
way `gan serve` calls it; PyTorch eager keeps its tensors on its device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from ceiling import matmul_gflops, timed  # bench/ceiling.py, beside this script
from torch import nn

from export.onnx import to_onnx
from gan.session import ProviderError, SessionOptions, create_session, has_nvidia_device
from train.model import Generator, init_weights

MODELS = {  # name -> (nz, ngf, channels, image_size)
    "default-32": (100, 64, 1, 32),
    "textbook-64": (100, 64, 3, 64),
}


def generator_flops(g: Generator) -> int:
    """FLOPs of one image: 2 * C_in * C_out * k*k * H_in * W_in per transposed convolution."""
    flops, size = 0, 1  # spatial side of the current activation, from (B, nz, 1, 1)
    for m in g.main:
        if isinstance(m, nn.ConvTranspose2d):
            k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
            flops += 2 * m.in_channels * m.out_channels * k * k * size * size
            size = (size - 1) * s - 2 * p + k
    return flops


def build(nz: int, ngf: int, channels: int, size: int) -> Generator:
    torch.manual_seed(0)
    g = Generator(nz, ngf, channels, size)
    g.apply(init_weights)
    with torch.no_grad():
        g.train()(torch.randn(64, nz))  # BatchNorm running statistics
    return g.eval()


def eager(g: Generator, device: str) -> Callable[[int], Callable[[], object]]:
    g = g.to(device)

    def make(batch: int) -> Callable[[], object]:
        z = torch.randn(batch, g.nz, device=device)

        def step() -> object:
            with torch.inference_mode():
                out = g(z)
            if device == "cuda":
                torch.cuda.synchronize()
            return out
        return step
    return make


def onnxruntime(model: Path, providers: str, max_batch: int, nz: int, threads: int
                ) -> tuple[str, Callable[[int], Callable[[], object]]]:
    s = create_session(model, SessionOptions(providers=providers, max_batch=max_batch,
                                             opt_batch=max_batch, intra_op_threads=threads))

    def make(batch: int) -> Callable[[], object]:
        z = np.random.default_rng(0).standard_normal((batch, nz), dtype=np.float32)
        return lambda: s.session.run(["images"], {"z": z})
    return s.provider, make


def bench_model(name: str, batches: list[int], args: argparse.Namespace, peak: dict[str, float],
                tmp: Path) -> dict[str, object]:
    nz, ngf, channels, size = MODELS[name]
    g = build(nz, ngf, channels, size)
    flops = generator_flops(g)
    model = tmp / f"{name}.onnx"
    model.write_bytes(to_onnx(g, output="float").SerializeToString())
    engines: dict[str, Callable[[int], Callable[[], object]]] = {"torch-eager-cpu": eager(g, "cpu")}
    skipped: dict[str, str] = {}
    _, engines["onnxruntime-cpu"] = onnxruntime(model, "cpu", max(batches), nz, args.threads)
    if torch.cuda.is_available():
        engines["torch-eager-cuda"] = eager(build(nz, ngf, channels, size), "cuda")
    else:
        skipped["torch-eager-cuda"] = "no CUDA device for torch"
    for choice in ("cuda", "tensorrt"):
        try:
            actual, make = onnxruntime(model, choice, max(batches), nz, 0)
        except ProviderError as e:
            skipped[f"onnxruntime-{choice}"] = str(e)
            continue
        if actual != choice:  # TensorRT fell back to CUDA: already measured as onnxruntime-cuda
            skipped[f"onnxruntime-{choice}"] = f"ONNX Runtime ran it on {actual}"
            continue
        engines[f"onnxruntime-{choice}"] = make
    results: dict[str, dict[str, object]] = {}
    for engine, make in engines.items():
        device = "cuda" if "cuda" in engine or "tensorrt" in engine else "cpu"
        rows = {}
        for b in batches:
            seconds = timed(make(b), args.seconds, args.reps)
            achieved = b * flops / seconds / 1e9
            rows[str(b)] = {"images_per_s": round(b / seconds, 1),
                            "gflops": round(achieved, 2),
                            "fraction_of_matmul": round(achieved / peak[device], 4)}
            print(f"{name} {engine} batch {b}: {b / seconds:.1f} images/s", file=sys.stderr)
        results[engine] = rows
    ratios = {}
    for engine in engines:
        base = "torch-eager-cpu" if engine == "onnxruntime-cpu" else "torch-eager-cuda"
        if engine.startswith("onnxruntime") and base in results:
            ratios[f"{engine}/{base}"] = {
                b: round(results[engine][b]["images_per_s"]  # type: ignore[index]
                         / results[base][b]["images_per_s"], 2)  # type: ignore[index]
                for b in results[engine]}
    return {"nz": nz, "ngf": ngf, "channels": channels, "image_size": size,
            "gflop_per_image": round(flops / 1e9, 4), "engines": results, "ratios": ratios,
            "skipped": skipped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batches 1 and 8, short timings")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--seconds", type=float, default=None, help="minimum timed seconds per figure")
    p.add_argument("--reps", type=int, default=None, help="minimum timed repetitions per figure")
    p.add_argument("--threads", type=int, default=0,
                   help="ONNX Runtime CPU intra-op threads (0: one per core)")
    args = p.parse_args()
    batches = [1, 8] if args.quick else [1, 8, 64, 256]
    args.seconds = args.seconds if args.seconds is not None else (0.05 if args.quick else 1.0)
    args.reps = args.reps if args.reps is not None else (2 if args.quick else 10)
    n = 1024 if args.quick else 2048
    peak = {"cpu": matmul_gflops("cpu", n, args.seconds)}
    if torch.cuda.is_available():
        peak["cuda"] = matmul_gflops("cuda", 8192 if not args.quick else 1024, args.seconds)
    report: dict[str, object] = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "onnxruntime": ort.__version__, "gpu": torch.cuda.get_device_name(0)
                    if torch.cuda.is_available() else None,
                    "nvidia_driver": has_nvidia_device()},
        "matmul_fp32_gflops": {k: round(v, 1) for k, v in peak.items()},
        "matmul_n": n, "quick": args.quick, "batches": batches,
        "timing": {"min_seconds": args.seconds, "min_reps": args.reps, "statistic": "median"},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            report["models"][name] = bench_model(name, batches, args, peak, Path(tmp))  # type: ignore[index]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
