"""Ray Serve's cost and gain: plain `gan serve` vs `gan serve --ray` with 1 and 2 replicas, at
concurrency 32, in one run, printed as one JSON document.

Each server is a subprocess (`--ray` starts its own local Ray and stops it after); all three run
at once and are measured in turns (--rounds, medians), so that other load on the machine hits
them alike. The load comes from a separate client process, the closed loop of
bench/serve_load.py (each of 32 callers sends its next request as soon as the last returns),
with requests of 1 and 16 PNG images. `ratios` (of the medians):

  ray1_vs_plain   images/s through Ray Serve's gRPC proxy, one replica / the plain server:
                  the proxy's cost (an extra hop and Ray's object transfer per request)
  ray2_vs_plain   two replicas / the plain server
  ray2_vs_ray1    two replicas / one: what the second replica buys (little on 2 cores)

    python bench/serve_ray.py                 # the default 32x32 generator (ngf 64, nz 100)
    python bench/serve_ray.py --model g.onnx  # your own exported generator

Needs dcgan-forge[ray]; torch and export only to make the default model (skipped with --model).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serve_load import _ratio, default_models, emit, load, start_server  # noqa: E402

CONCURRENCY = 32
SIZES = (1, 16)


def rounds(servers: dict[str, str], points: list[dict[str, Any]], count: int,
           warmup_s: float, duration_s: float) -> dict[str, list[list[dict[str, Any]]]]:
    """Every server measured `count` times, in turns (A B C A B C ...), so that a change in the
    machine's other load hits each server alike; -> name -> one list of points per round."""
    out: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in servers}
    for _ in range(count):
        for name, address in servers.items():
            out[name].append(load(address, points, warmup_s, duration_s))
    return out


def summary(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per point: the median images/s over the rounds, each round's figure, errors, p50."""
    rows = []
    for i, point in enumerate(runs[0]):
        rates = [r[i]["images_per_s"] for r in runs]
        rows.append({"num_images": point["num_images"], "format": point["format"],
                     "concurrency": point["concurrency"],
                     "images_per_s": float(np.median(rates)), "rounds_images_per_s": rates,
                     "p50_ms_median": float(np.median([r[i]["p50_ms"] for r in runs])),
                     "errors": sum(r[i]["errors"] for r in runs)})
    return rows


def ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    def rate(name: str, n: int) -> float:
        return next(r["images_per_s"] for r in runs[name] if r["num_images"] == n)

    out: dict[str, dict[str, float | None]] = {}
    for n in SIZES:
        key = f"png_n{n}"
        for a, b in (("ray_1", "plain"), ("ray_2", "plain"), ("ray_2", "ray_1")):
            name = f"{a.replace('_', '')}_vs_{b.replace('_', '')}"
            out.setdefault(name, {})[key] = _ratio(rate(a, n), rate(b, n))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported generator (default: make one)")
    parser.add_argument("--providers", default="cpu")
    parser.add_argument("--max-batch", type=int, default=64, help="--max-batch-size per server")
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured time per point")
    parser.add_argument("--rounds", type=int, default=3, help="turns per server (median)")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="unmeasured time per point")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    points = [{"concurrency": CONCURRENCY, "num_images": n, "format": "png"} for n in SIZES]
    cores = len(os.sched_getaffinity(0))
    # one replica gets every core; two share them (their ONNX Runtime threads follow)
    servers = {"plain": [],
               "ray_1": ["--ray", "--replicas", "1", "--replica-cpus", str(cores)],
               "ray_2": ["--ray", "--replicas", "2", "--replica-cpus", str(cores / 2)]}
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_models(Path(tmp), quick=False)[0]
        try:  # all three up at once (idle ones cost little), then measured in turns
            addresses = {}
            for name, flags in servers.items():
                proc, addresses[name] = start_server(model, args.providers, args.max_batch,
                                                     *flags)
                procs.append(proc)
            measured = rounds(addresses, points, args.rounds, args.warmup_s, args.duration_s)
        finally:
            for proc in procs:  # SIGTERM: `--ray` deletes its application and stops its Ray
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=120)
    runs = {name: summary(r) for name, r in measured.items()}
    report = {
        "host": {"cpus": os.cpu_count(), "usable_cores": cores,
                 "python": platform.python_version(), "machine": platform.machine(),
                 "load_average": os.getloadavg()},
        "settings": {"model": model.name, "concurrency": CONCURRENCY, "sizes": SIZES,
                     "format": "png", "duration_s": args.duration_s, "warmup_s": args.warmup_s,
                     "rounds": args.rounds,
                     "max_batch": args.max_batch, "providers": args.providers,
                     "servers": servers},
        "runs": runs, "ratios": ratios(runs)}
    emit(report, args.out)


if __name__ == "__main__":
    main()
