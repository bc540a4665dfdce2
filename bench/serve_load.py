"""Closed-loop load on `gan serve`, beside raw ONNX Runtime, printed as one JSON document.

For each model (default: the default 32x32 generator, ngf 64, nz 100, and the same at 64x64,
random DCGAN-init weights: the cost of inference does not depend on training), it measures

  raw        ONNX Runtime in this process: latency at batch 1, images/s at batch 1 and at every
             power of two up to --raw-max-batch, one call at a time on every core (the best of
             them is the reference, as issue 13 defines it); and the same with one
             single-threaded call per core at once (`parallel`: what the server's workers do);
  ceiling    a do-nothing gRPC server (the same grpc.aio + uvloop stack, a fixed 1-image answer
             of each format) driven by the same client: the most 1-image requests per second
             this machine's RPC stack allows with no model at all;
  batched    `gan serve` (a subprocess) with dynamic batching (--server-max-batch images);
  unbatched  the same server with --max-batch-size 1 (batching off);

and drives each server from a SEPARATE client process (asyncio gRPC, closed loop: each of C
concurrent callers sends its next request as soon as the last one returns) at concurrency 1, 8,
32, 128, with requests of 1 and 16 images, in RAW_FLOAT32 and PNG: images/s and p50/p90/p99
latency in ms. `ratios` holds what issues 4 and 13's targets name:

  c32_vs_raw_best        batched images/s at concurrency 32 / raw ORT images/s at its best batch
  c32_vs_raw_parallel    the same / raw ORT's parallel best (the stricter reference)
  c32_vs_ceiling         batched 1-image requests/s at concurrency 32 / the do-nothing server's
  c32_vs_unbatched       batched / unbatched images/s at concurrency 32
  c1_p50_minus_raw_b1_ms batched p50 at concurrency 1 (1 image) - raw ORT p50 at batch 1, in ms
  c1_ceiling_p50_ms      the do-nothing server's p50 at concurrency 1: the RPC's own share

    python bench/serve_load.py                 # full run (several minutes)
    python bench/serve_load.py --quick         # smoke run: tiny durations, fewer points
    python bench/serve_load.py --model a.onnx  # your own exported generators instead

Needs torch and export only to make the default models (skipped with --model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONCURRENCY = (1, 8, 32, 128)
SIZES = (1, 16)
FORMATS = ("raw_float32", "png")


def percentiles(latencies_s: list[float]) -> dict[str, float]:
    ms = np.asarray(latencies_s) * 1000
    if not len(ms):
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan")}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3)}


# -- the client process ---------------------------------------------------------------------

async def _closed_loop(address: str, concurrency: int, n: int, fmt: str, warmup_s: float,
                       duration_s: float) -> dict[str, Any]:
    import grpc

    from serve._proto.gan.v1 import generator_pb2 as pb
    from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc
    from serve.config import message_options
    from serve.images import TO_PB

    latencies: list[float] = []
    images = errors = 0
    async with grpc.aio.insecure_channel(address, options=message_options(256 << 20)) as ch:
        stub = pb_grpc.GeneratorStub(ch)
        began = time.perf_counter()
        measure_from, stop_at = began + warmup_s, began + warmup_s + duration_s

        async def caller(k: int) -> None:
            nonlocal images, errors
            seed = k * 1_000_003
            while (now := time.perf_counter()) < stop_at:  # closed loop: next as last returns
                seed += 1
                req = pb.GenerateRequest(num_images=n, seed=seed, format=TO_PB[fmt])
                try:
                    await stub.Generate(req, timeout=60)
                except grpc.RpcError:
                    errors += 1
                    continue
                done = time.perf_counter()
                if measure_from <= done <= stop_at:  # steady state: completions per second
                    latencies.append(done - now)
                    images += n

        await asyncio.gather(*(caller(k) for k in range(concurrency)))
    return {"concurrency": concurrency, "num_images": n, "format": fmt,
            "images_per_s": round(images / duration_s, 1), "requests": len(latencies),
            "errors": errors, **percentiles(latencies)}


def _uvloop() -> None:
    """The client and the ceiling server on uvloop when installed (as `gan serve` is): the
    cheapest Python client leaves the most of the shared cores to the server."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def client_main(spec: dict[str, Any]) -> None:
    _uvloop()
    results = [asyncio.run(_closed_loop(spec["address"], p["concurrency"], p["num_images"],
                                        p["format"], spec["warmup_s"], spec["duration_s"]))
               for p in spec["points"]]
    print(json.dumps(results))


# -- the do-nothing server ------------------------------------------------------------------

async def _null_server(height: int, width: int, channels: int) -> None:
    """Answer every Generate with one fixed image of the asked format; print the address."""
    import grpc
    import numpy as np

    from serve import images
    from serve._proto.gan.v1 import generator_pb2 as pb
    from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc

    picture = np.zeros((height, width, channels), np.uint8)
    answers = {kind: pb.GenerateResponse(images=[pb.Image(
        data=images.encode(picture.astype(np.float32) if fmt == "raw_float32" else picture, fmt),
        height=height, width=width, channels=channels, format=kind)], model_id="null")
        for fmt, kind in images.TO_PB.items()}

    class Null(pb_grpc.GeneratorServicer):
        async def Generate(self, request: Any, context: Any) -> Any:
            return answers[request.format]

    server = grpc.aio.server()
    pb_grpc.add_GeneratorServicer_to_server(Null(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving null on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def ceiling(model: Path, points: list[dict[str, Any]], warmup_s: float,
            duration_s: float) -> list[dict[str, Any]]:
    """The 1-image points against the do-nothing server (same image size as `model`)."""
    from gan.model import read_info

    info = read_info(model)
    proc = subprocess.Popen([sys.executable, __file__, "--null-server",
                             f"{info.height},{info.width},{info.channels}"],
                            env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().split()[3]  # type: ignore[union-attr]
        return load(address, [p for p in points if p["num_images"] == 1], warmup_s, duration_s)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- raw ONNX Runtime -----------------------------------------------------------------------

def raw_ort(model: Path, providers: str, max_batch: int, duration_s: float) -> dict[str, Any]:
    from gan.session import SessionOptions, create_session
    from serve.model import default_threads

    s = create_session(model, SessionOptions(providers=providers, max_batch=max_batch,
                                             intra_op_threads=default_threads()))
    result = _one_at_a_time(s, max_batch, duration_s)
    if s.provider == "cpu" and default_threads() > 1:  # the server's CPU plan: a call per core
        single = create_session(model, SessionOptions(providers="cpu", max_batch=max_batch,
                                                      intra_op_threads=1))
        result["parallel"] = _parallel(single, default_threads(), max_batch, duration_s)
    return result


def _parallel(s: Any, callers: int, max_batch: int, duration_s: float) -> dict[str, Any]:
    """images/s of `callers` threads each calling the (single-threaded) session at once."""
    import threading

    name, nz = s.session.get_inputs()[0].name, int(s.session.get_inputs()[0].shape[1])
    z_by_batch = {}
    b = 1
    while b <= max_batch:
        z_by_batch[b] = np.random.default_rng(0).standard_normal((b, nz), dtype=np.float32)
        b *= 2
    per_batch: dict[int, float] = {}
    for b, z in z_by_batch.items():
        counts = [0] * callers
        stop_at = time.perf_counter() + duration_s

        def call(k: int, z: np.ndarray = z, stop_at: float = stop_at,
                 counts: list[int] = counts) -> None:
            while time.perf_counter() < stop_at:
                s.session.run(None, {name: z})
                counts[k] += 1

        threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        per_batch[b] = round(sum(counts) * b / (time.perf_counter() - began), 1)
    best = max(per_batch, key=per_batch.__getitem__)
    return {"callers": callers, "images_per_s_by_batch": per_batch, "best_batch": best,
            "best_images_per_s": per_batch[best]}


def _one_at_a_time(s: Any, max_batch: int, duration_s: float) -> dict[str, Any]:
    """Latency at batch 1 and images/s at each power-of-two batch, one call at a time."""
    name, nz = s.session.get_inputs()[0].name, int(s.session.get_inputs()[0].shape[1])
    rng = np.random.default_rng(0)
    per_batch: dict[int, float] = {}
    latencies: list[float] = []
    b = 1
    while b <= max_batch:
        z = rng.standard_normal((b, nz), dtype=np.float32)
        s.session.run(None, {name: z})
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < duration_s:
            t = time.perf_counter()
            s.session.run(None, {name: z})
            if b == 1:
                latencies.append(time.perf_counter() - t)
            count += 1
        per_batch[b] = round(count * b / (time.perf_counter() - began), 1)
        b *= 2
    best = max(per_batch, key=per_batch.__getitem__)
    return {"provider": s.provider, "images_per_s_by_batch": per_batch, "best_batch": best,
            "best_images_per_s": per_batch[best], "batch1_images_per_s": per_batch[1],
            "batch1_latency": percentiles(latencies)}


# -- servers ----------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    """This checkout first on the path, keeping what the caller's PYTHONPATH already has (an
    onnxruntime-gpu unpacked beside the system one, say)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {"PYTHONPATH": path}


def start_server(model: Path, providers: str, max_batch: int, *flags: str
                 ) -> tuple[subprocess.Popen, str]:
    """`gan serve MODEL ... FLAGS` -> (process, address) once it prints its `serving` line."""
    env = _env()
    log = tempfile.TemporaryFile("w+")  # the server's log, read back only if it fails to start
    proc = subprocess.Popen(
        [sys.executable, "-m", "gan", "serve", str(model), "--port", "0", "--providers",
         providers, "--max-batch-size", str(max_batch), "--max-queue-size", "8192",
         "--max-images-per-request", "64", "--grace-s", "5", *flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        proc.wait()
        log.seek(0)
        err = log.read().strip().splitlines()[-1:]
        raise SystemExit(f"gan serve {' '.join(flags)} did not start on {model}: "
                         f"{line or err!r}")
    return proc, line.split()[3]


def load(address: str, points: list[dict[str, Any]], warmup_s: float,
         duration_s: float) -> list[dict[str, Any]]:
    spec = {"address": address, "points": points, "warmup_s": warmup_s,
            "duration_s": duration_s}
    out = subprocess.run([sys.executable, __file__, "--client", json.dumps(spec)],
                         capture_output=True, text=True, check=True,
                         env=_env())
    return json.loads(out.stdout)


def serve_and_load(model: Path, providers: str, max_batch: int, points: list[dict[str, Any]],
                   warmup_s: float, duration_s: float) -> list[dict[str, Any]]:
    proc, address = start_server(model, providers, max_batch)
    try:
        return load(address, points, warmup_s, duration_s)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if a and b else None  # None: a point completed no request


def ratios(raw: dict[str, Any], batched: list[dict], unbatched: list[dict],
           null: list[dict]) -> dict[str, Any]:
    def pick(rows: list[dict], c: int, n: int, fmt: str) -> dict | None:
        return next((r for r in rows if (r["concurrency"], r["num_images"], r["format"])
                     == (c, n, fmt)), None)

    out: dict[str, Any] = {}
    for fmt in FORMATS:
        for n in sorted({r["num_images"] for r in batched}):
            b, u = pick(batched, 32, n, fmt), pick(unbatched, 32, n, fmt)
            key = f"{fmt}_n{n}"
            if b:
                out.setdefault("c32_vs_raw_best", {})[key] = _ratio(
                    b["images_per_s"], raw["best_images_per_s"])
                if "parallel" in raw:
                    out.setdefault("c32_vs_raw_parallel", {})[key] = _ratio(
                        b["images_per_s"], raw["parallel"]["best_images_per_s"])
                ceil = pick(null, 32, 1, fmt)
                if n == 1 and ceil:
                    out.setdefault("c32_vs_ceiling", {})[fmt] = _ratio(
                        b["images_per_s"], ceil["images_per_s"])
            if b and u:
                out.setdefault("c32_vs_unbatched", {})[key] = _ratio(
                    b["images_per_s"], u["images_per_s"])
        one = pick(batched, 1, 1, fmt)
        if one:
            out.setdefault("c1_p50_minus_raw_b1_ms", {})[fmt] = round(
                one["p50_ms"] - raw["batch1_latency"]["p50_ms"], 3)
        ceil1 = pick(null, 1, 1, fmt)
        if ceil1:
            out.setdefault("c1_ceiling_p50_ms", {})[fmt] = ceil1["p50_ms"]
    return out


# -- models -----------------------------------------------------------------------------------

def default_models(folder: Path, quick: bool) -> list[Path]:
    import torch

    import export.onnx as eo
    from gan import contract
    from train.config import TrainConfig
    from train.model import Generator, init_weights

    paths = []
    for size in (32, 64):
        cfg = TrainConfig(image_size=size, channels=1)  # the default run's generator, at size
        if quick:
            cfg.ngf = 16
        torch.manual_seed(0)
        g = Generator(cfg.nz, cfg.ngf, 1, size)
        g.apply(init_weights)
        meta = contract.metadata(cfg.to_dict(), output="float", precision="fp32",
                                 opset=eo.DEFAULT_OPSET, step=0, checkpoint_sha256="0" * 64)
        path = folder / f"g{size}_ngf{cfg.ngf}.onnx"
        eo.save_atomic(eo.to_onnx(g, output="float", meta=meta), path)
        paths.append(path)
    return paths


def host() -> dict[str, Any]:
    """The machine the figures come from: cores, CPU model and its vector capability."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        capability = "unknown (no torch)"
    return {"cpus": os.cpu_count(), "cpu": model, "cpu_capability": capability,
            "python": platform.python_version(), "machine": platform.machine(),
            "load_avg_at_start": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append",
                        help="exported generator(s) to measure (default: make the two defaults)")
    parser.add_argument("--providers", default="cpu", help="auto, tensorrt, cuda or cpu")
    parser.add_argument("--server-max-batch", type=int, default=64,
                        help="--max-batch-size of the batched server (the server's default)")
    parser.add_argument("--raw-max-batch", type=int, default=256)
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured time per point")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured time per point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="images per request")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--no-unbatched", action="store_true",
                        help="skip the batching-off server (no c32_vs_unbatched ratio)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny and short")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the do-nothing server (no c32_vs_ceiling ratio)")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the load-generating process
    parser.add_argument("--null-server", help=argparse.SUPPRESS)  # H,W,C: the ceiling server
    args = parser.parse_args()
    if args.client:
        client_main(json.loads(args.client))
        return
    if args.null_server:
        _uvloop()
        asyncio.run(_null_server(*(int(v) for v in args.null_server.split(","))))
        return
    conc, duration, warmup = tuple(args.concurrency), args.duration_s, args.warmup_s
    raw_max = args.raw_max_batch
    if args.quick:
        conc, duration, warmup, raw_max = (1, 32), 0.5, 0.2, 16
    points = [{"concurrency": c, "num_images": n, "format": f}
              for f in args.formats for n in args.sizes for c in conc]
    with tempfile.TemporaryDirectory() as tmp:
        models = args.model or default_models(Path(tmp), args.quick)
        report: dict[str, Any] = {
            "host": host(),
            "settings": {"duration_s": duration, "warmup_s": warmup, "concurrency": conc,
                         "sizes": args.sizes, "formats": args.formats,
                         "providers": args.providers,
                         "server_max_batch": args.server_max_batch, "quick": args.quick},
            "models": []}
        for model in models:
            raw = raw_ort(model, args.providers, raw_max, duration)
            batched = serve_and_load(model, args.providers, args.server_max_batch, points,
                                     warmup, duration)
            unbatched = [] if args.no_unbatched else serve_and_load(
                model, args.providers, 1, points, warmup, duration)
            null = [] if args.no_ceiling else ceiling(model, points, warmup, duration)
            report["models"].append({"model": model.name, "raw_ort": raw, "batched": batched,
                                     "unbatched": unbatched, "ceiling": null,
                                     "ratios": ratios(raw, batched, unbatched, null)})
    emit(report, args.out)


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the report as JSON, and write it to `out` too (atomically) when given."""
    text = json.dumps(report, indent=2)
    if out:
        from gan.atomic import atomic_write

        atomic_write(out, lambda f: f.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()
