#!/usr/bin/env python3
"""Training throughput of `gan train` beside the textbook DCGAN loop, measured in one run.

Both train the textbook configuration (64x64, ngf = ndf = 64, nz = 100, batch 64, real
Fashion-MNIST, Adam 2e-4/0.5, non-saturating BCE losses) for the same number of timed steps
after the same warm-up, one after the other on the same machine, each in its own process. The
reference is ../shared/reference/dcgan_reference.py (per-image PIL transforms in DataLoader
workers, eager fp32). Prints one JSON object with images/s for each and the ratios.

    python bench/train_throughput.py [--steps 40] [--warmup 10] [--reference PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.data import cache_dir, prepare_debian_fashion_mnist  # noqa: E402

TEXTBOOK = ["--image-size", "64", "--ngf", "64", "--ndf", "64", "--nz", "100",
            "--batch-size", "64", "--loss", "ns"]


def reference(script: Path, root: Path, steps: int, warmup: int) -> dict:
    out = subprocess.run([sys.executable, str(script), "--data-root", str(root), "--steps",
                          str(steps), "--warmup", str(warmup), "--batch-size", "64",
                          "--image-size", "64"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(name: str, extra: list[str], steps: int, warmup: int, device: str) -> dict:
    """Run `gan train` for warmup + steps generator steps, logging every `warmup` steps; the
    timed span is from the log at the end of warm-up to the last log (metrics.jsonl times)."""
    assert steps % warmup == 0, "--steps must be a multiple of --warmup"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "gan", "train", *TEXTBOOK, "--device", device, *extra,
               "--out", f"{tmp}/run",
               "--max-steps", str(warmup + steps), "--log-every", str(warmup),
               "--checkpoint-every", str(10**9)]
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        lines = [json.loads(x) for x in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    start = next(x for x in lines if x["step"] == warmup)
    end = lines[-1]
    ips = (end["step"] - start["step"]) * 64 / (end["time"] - start["time"])
    return {"impl": name, "images_per_s": round(ips, 2), "steps": steps, "flags": extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="timed generator steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="device of the gan train runs (the reference loop is CPU-only)")
    ap.add_argument("--reference", type=Path,
                    default=ROOT.parent / "shared" / "reference" / "dcgan_reference.py")
    args = ap.parse_args()
    root = cache_dir()
    if not prepare_debian_fashion_mnist(root):
        sys.exit("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    import torch

    variants = [("gan_train", "gan train (defaults: eager, channels_last, auto precision)", [])]
    variants.append(("gan_train_compiled", "gan train --compile", ["--compile"]))
    if args.device == "cuda":
        variants.append(("gan_train_fp32", "gan train --precision fp32", ["--precision", "fp32"]))
    runs = {"reference": reference(args.reference, root, args.steps, args.warmup)}
    for key, name, extra in variants:
        runs[key] = ours(name, extra, args.steps, args.warmup, args.device)
    ref = runs["reference"]["images_per_s"]
    print(json.dumps({
        "benchmark": "train_throughput", "config": "64x64 ngf=ndf=64 nz=100 batch 64",
        "device": args.device,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "runs": runs,
        "ratio_vs_reference": {k: round(v["images_per_s"] / ref, 2) for k, v in runs.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
