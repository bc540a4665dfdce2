#!/usr/bin/env python3
"""Training throughput of `gan train` beside the textbook DCGAN loop, measured in one run.

Both train the textbook configuration (64x64, ngf = ndf = 64, nz = 100, batch 64, real
Fashion-MNIST, Adam 2e-4/0.5, non-saturating BCE losses) for the same number of timed steps
after the same warm-up, one after the other on the same machine, each in its own process. The
reference is ../shared/reference/dcgan_reference.py (per-image PIL transforms in DataLoader
workers, eager fp32). Prints one JSON object with images/s for each and the ratios, and the CPU's
capability with the precision `--precision auto` chose on it (bf16 only with native bf16), and
the hardware's bound (bench/ceiling.py: a step's counted FLOPs at this CPU's matrix-product peak)
as `ratio_vs_reference.bound`, the most any ratio could be here. With --rounds N the runs repeat
N times in turn and each ratio is the median of the N rounds' ratios (a shared host's speed
drifts over minutes; one round's runs are neighbours in time).

--ops instead times every ATen call of training steps, summed per operator (a dispatch mode:
torch.profiler's own overhead inflates the small operators several times).

--gemm-ab instead times train/gemm_conv's matrix-product passes on and off in one process, at the
precision --precision names (auto: what `gan train` picks); --rules ISA takes the rules of another
kernel name (train/gemm_conv.kernels(): AVX2, AVX512+AMX, AVX512/AMD, ...), to see whether a rule
measured on one CPU would gain on this one (an AMD CPU takes no fp32 products under its own rule).

--profile instead profiles training steps in this process with torch.profiler, at the textbook
configuration and at `gan train`'s default one (32 px, batch 128), and prints the top operators
by self CPU time per step, with the share of the step spent in convolutions (forward and
backward): what is left to remove once that share is near 100%.

    python bench/train_throughput.py [--steps 40] [--warmup 10] [--rounds 1] [--reference PATH]
                                     [--profile] [--ops]
                                     [--gemm-ab [--precision fp32] [--blocks 4] [--rules AVX2]]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.data import cache_dir, prepare_debian_fashion_mnist  # noqa: E402
from train.gemm_conv import KERNEL_NAMES  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))  # as a script or as python -m bench.train_throughput
from ceiling import ceiling  # noqa: E402
from machine import machine  # noqa: E402

# The reference loop sits in the shared folder beside the main checkout (../shared) or, from a
# worktree under /work/wt/NAME, two levels up; --reference overrides both.
REFERENCES = [ROOT.parent / "shared" / "reference" / "dcgan_reference.py",
              ROOT.parents[1] / "shared" / "reference" / "dcgan_reference.py"]
TEXTBOOK = ["--image-size", "64", "--ngf", "64", "--ndf", "64", "--nz", "100",
            "--batch-size", "64", "--loss", "ns", "--lr-g", "2e-4", "--lr-d", "2e-4"]


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


def rounds(args: argparse.Namespace, root: Path, variants: list) -> tuple[dict, dict]:
    """`--rounds` rounds of the reference then every variant, each ratio taken within its round
    (on a host whose speed drifts over minutes, neighbours share the drift). Per run: the median
    round's images/s and every round's; ratios: the median of the rounds' ratios."""
    seen: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        seen.setdefault("reference", []).append(
            reference(args.reference, root, args.steps, args.warmup))
        for key, name, extra in variants:
            seen.setdefault(key, []).append(ours(name, extra, args.steps, args.warmup,
                                                 args.device))
    refs = [r["images_per_s"] for r in seen["reference"]]
    runs, ratios = {}, {}
    for key, results in seen.items():
        rates = [r["images_per_s"] for r in results]
        each = [x / y for x, y in zip(rates, refs, strict=True)]
        runs[key] = {**results[0], "images_per_s": statistics.median(rates)}
        ratios[key] = round(statistics.median(each), 2)
        if args.rounds > 1:
            runs[key]["rounds"] = rates
            ratios[key + "_rounds"] = [round(x, 2) for x in each]
    return runs, ratios


@contextlib.contextmanager
def trainer_for(overrides: dict):
    """A CPU Trainer for `overrides` in a temporary run directory, with its epoch-0 batches
    (steps, d_steps, batch) of image indices."""
    import torch

    from train import distributed
    from train.config import TrainConfig
    from train.loop import Trainer

    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(**overrides, out=f"{tmp}/run"), device,
                          distributed.init(device))
        try:
            yield trainer, trainer.epoch_batches(0)
        finally:
            trainer.close()


def profile(overrides: dict, warmup: int, steps: int, top: int = 15) -> dict:
    """torch.profiler over `steps` training steps (after `warmup` untimed ones): the `top`
    operators by self CPU time, in ms per step and % of the step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with trainer_for(overrides) as (trainer, groups):
        for i in range(warmup):
            trainer.train_step(groups[i])
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(warmup, warmup + steps):
                trainer.train_step(groups[i])
            trainer.sync()
        batch = trainer.cfg.batch_size
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {"config": overrides, "steps": steps,
            "ms_per_step": round(total / steps / 1e3, 1),
            "images_per_s": round(batch * steps / (total / 1e6), 1),
            "convolution_share": round(conv / total, 3),
            "top_self_cpu": [{"op": e.key, "calls_per_step": round(e.count / steps, 1),
                              "ms_per_step": round(e.self_cpu_time_total / steps / 1e3, 2),
                              "share": round(e.self_cpu_time_total / total, 3)} for e in rows]}


def op_times(overrides: dict, warmup: int, steps: int, top: int = 15) -> dict:
    """Wall time of every ATen call over `steps` training steps, summed per operator (a
    TorchDispatchMode: far less overhead on small ops than torch.profiler), beside the step's
    time without the mode."""
    import collections
    import time

    from torch.utils._python_dispatch import TorchDispatchMode

    spent: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()

    class Timed(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            spent[name] += time.perf_counter() - start
            calls[name] += 1
            return out

    with trainer_for(overrides) as (trainer, groups):
        for i in range(warmup):
            trainer.train_step(groups[i])
        trainer.sync()
        start = time.perf_counter()
        for i in range(warmup, warmup + steps):
            trainer.train_step(groups[i])
        trainer.sync()
        step_ms = (time.perf_counter() - start) / steps * 1e3
        with Timed():
            for i in range(warmup + steps, warmup + 2 * steps):
                trainer.train_step(groups[i % len(groups)])
    total = sum(spent.values())
    return {"config": overrides, "steps": steps, "ms_per_step": round(step_ms, 1),
            "ops_ms_per_step": round(total / steps * 1e3, 1),
            "top": [{"op": k, "calls_per_step": round(calls[k] / steps, 1),
                     "ms_per_step": round(v / steps * 1e3, 2), "share": round(v / total, 3)}
                    for k, v in spent.most_common(top)]}


def gemm_ab(overrides: dict, warmup: int, blocks: int = 4, steps: int = 6,
            rules: str | None = None) -> dict:
    """train/gemm_conv's product path on and off, interleaved in blocks of `steps` training steps
    of one Trainer (so load hits both sides alike), after `warmup` untimed steps of each side:
    images/s each.
    rules: the kernel name whose rules the "on" side follows (None: this CPU's own)."""
    import time

    import train.gemm_conv as gc

    rates: dict[str, list[float]] = {"on": [], "off": []}
    gc.RULES_OF = rules
    try:
        with trainer_for(overrides) as (trainer, groups):
            i, batch = 0, trainer.cfg.batch_size
            for i in range(2 * warmup):  # both sides: their first calls (oneDNN primitives,
                gc.ENABLED = i % 2 == 0  # scratch buffers) before any timing
                trainer.train_step(groups[i])
            for block in range(blocks):
                for side in ("on", "off") if block % 2 == 0 else ("off", "on"):
                    gc.ENABLED = side == "on"
                    trainer.sync()  # host sync: the block starts with nothing queued
                    start = time.perf_counter()
                    for _ in range(steps):
                        i += 1
                        trainer.train_step(groups[i % len(groups)])
                    trainer.sync()
                    rates[side].append(steps * batch / (time.perf_counter() - start))
    finally:
        gc.ENABLED, gc.RULES_OF = True, None
    mean = {k: round(sum(v) / len(v), 1) for k, v in rates.items()}
    return {"images_per_s": mean, "ratio_on_vs_off": round(mean["on"] / mean["off"], 3),
            "blocks": {k: [round(x, 1) for x in v] for k, v in rates.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="timed generator steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of every run, ratios taken within each round (noisy hosts)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="device of the gan train runs (the reference loop is CPU-only)")
    ap.add_argument("--reference", type=Path,
                    default=next((p for p in REFERENCES if p.exists()), REFERENCES[0]))
    ap.add_argument("--profile", action="store_true",
                    help="profile training steps (textbook and default configuration) instead")
    ap.add_argument("--ops", action="store_true",
                    help="instead: time every ATen call of training steps (textbook and default "
                         "configuration), summed per operator")
    ap.add_argument("--gemm-ab", action="store_true",
                    help="instead: train/gemm_conv's product passes on vs off, in one process "
                         "(textbook and default configuration)")
    ap.add_argument("--precision", default="auto", help="--gemm-ab's precision (auto, fp32, bf16)")
    ap.add_argument("--blocks", type=int, default=4,
                    help="--gemm-ab's interleaved blocks of 6 steps per side")
    ap.add_argument("--rules", default=None, choices=KERNEL_NAMES,
                    help="--gemm-ab: follow another kernel name's rules instead of this CPU's")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.rules and not args.gemm_ab:
        ap.error("--rules applies to --gemm-ab only")
    textbook = {"image_size": 64, "ngf": 64, "ndf": 64, "nz": 100, "batch_size": 64,
                "lr_g": 2e-4, "lr_d": 2e-4}
    if args.gemm_ab:
        prec = {"precision": args.precision}
        ab = functools.partial(gemm_ab, warmup=5, blocks=args.blocks, rules=args.rules)
        print(json.dumps({"benchmark": "gemm_conv_ab", "machine": machine("cpu"),
                          "precision": args.precision, "rules": args.rules or "own",
                          "textbook-64px": ab({**textbook, **prec}),
                          "default-32px": ab(prec)}, indent=2))
        return
    if args.ops:
        print(json.dumps({"benchmark": "train_op_times", "machine": machine("cpu"),
                          "textbook-64px": op_times(textbook, 5, args.steps // 8),
                          "default-32px": op_times({}, 5, args.steps // 8)}, indent=2))
        return
    if args.profile:
        print(json.dumps({"benchmark": "train_profile", "machine": machine("cpu"),
                          "profiles": {"textbook-64px": profile(textbook, 8, args.steps // 4),
                                       "default-32px": profile({}, 8, args.steps // 4)}},
                         indent=2))
        return
    root = cache_dir()
    if not prepare_debian_fashion_mnist(root):
        sys.exit("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")

    variants = [("gan_train", "gan train (defaults: eager, channels_last, auto precision)", [])]
    variants.append(("gan_train_compiled", "gan train --compile", ["--compile"]))
    if args.device == "cuda":
        variants.append(("gan_train_fp32", "gan train --precision fp32", ["--precision", "fp32"]))
    runs, ratios = rounds(args, root, variants)
    ref = runs["reference"]["images_per_s"]
    bound = None
    if args.device == "cpu":
        with trainer_for(textbook) as (trainer, groups):
            bound = ceiling(trainer, groups)
    if bound:  # the hardware's limit, in the same units: what a ratio could be at most here
        ratios["bound"] = round(bound["bound_images_per_s"] / ref, 2)
    print(json.dumps({
        "benchmark": "train_throughput", "config": "64x64 ngf=ndf=64 nz=100 batch 64",
        "device": args.device,
        "machine": machine(args.device),
        "runs": runs,
        "ceiling": bound,
        "ratio_vs_reference": ratios,
    }, indent=2))


if __name__ == "__main__":
    main()
