#!/usr/bin/env python3
"""Image quality of training configurations at equal budgets, with and without EMA.

Trains `gan train`'s default configuration (32x32, ngf = ndf = 64, batch 128) and the 64x64
textbook configuration of the PyTorch DCGAN tutorial (ngf = ndf = 64, batch 128) on real
Fashion-MNIST, each for the same wall-clock budget (--seconds) and for the same number of
training images (--images), then scores every run with `gan eval` (classifier features: FID,
KID, precision, recall against the real test split) for the EMA generator and the raw one.
Prints one JSON object; --out also writes it and copies each run's last sample grid there.
--arch mlp,dcgan compares architectures instead: the original fully connected GAN at 28 px
(`--arch mlp`, G 256 / D 128 hidden) against the default DCGAN at 32 px, both batch 128; their
FIDs share one feature space (the classifier pads 28 px images to 32 as the pipeline does).

    python bench/quality.py [--seconds 300[,1800...]] [--images 32000] [-n 10000]
                            [--arch mlp,dcgan] [--recipe today,NAME] [--longer NAME=SECONDS]
                            [--out DIR]

--recipe conditional-before-12,conditional compares the conditional default without and with the
class loss and mode-seeking term issue 12 added (rows then carry class_accuracy as well).

--seconds takes several budgets: each run trains to the first, is scored, resumes (`gan train
--resume`, exact: the data order and every random state are in the checkpoint) for the next
budget's remaining seconds, is scored again, and so on; --longer NAME=SECONDS takes one recipe's
run on to a further budget (the one-hour run) without spending it on every recipe. The seconds
counted are the training loop's own (start-up and data loading of each leg are not spent from
the budget). Each leg's first steps (warm-up; with --compile, the whole compilation) are spent
from its own budget, so compare split runs of eager recipes only. A budget of 0 skips it.

Equal-image results do not depend on the machine's load (training is
deterministic for a seed); equal-time results do: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # as a script or as python -m bench.quality
from machine import machine  # noqa: E402  # the record only: runs are `gan` subprocesses

# The textbook configuration keeps its recipe's learning rate (2e-4); before-12-32px is the
# default recipe before issue 12 raised the learning rates to 4e-4.
CONFIGS = {
    "default-32px": [],
    "before-12-32px": ["--lr-g", "2e-4", "--lr-d", "2e-4"],
    "textbook-64px": ["--image-size", "64", "--ngf", "64", "--ndf", "64", "--batch-size", "128",
                      "--lr-g", "2e-4", "--lr-d", "2e-4"],
    "mlp-28px": ["--arch", "mlp"],
    # the conditional default before issue 12 added its class loss and mode-seeking term, and now
    "conditional-before-12": ["--conditional", "--class-weight", "0", "--mode-seeking", "0"],
    "conditional": ["--conditional"],
}
ARCH_CONFIGS = {"dcgan": "default-32px", "mlp": "mlp-28px"}  # --arch NAME -> its configuration
ALIASES = {"today": "default-32px"}  # --recipe today: the default recipe as it is now
LOG_EVERY = 5  # --max-seconds is checked at logging steps: often, so budgets stay equal


def batch_of(name: str) -> int:
    """The batch size a configuration trains with: its --batch-size, else gan train's default."""
    flags = CONFIGS[name]
    if "--batch-size" in flags:
        return int(flags[flags.index("--batch-size") + 1])
    from train.config import TrainConfig  # no torch: the dataclass alone

    return TrainConfig().batch_size


def gan(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gan", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def train(name: str, budget: list[str], out: Path, seed: int, resume: bool = False) -> dict:
    """One run (or, with resume, its next leg); seconds is the whole `gan train` process
    (start-up and data loading too), and cpu_seconds the CPU time it got: on a shared machine
    equal wall-clock is not equal work."""
    began, cpu = time.perf_counter(), _child_cpu()
    gan("train", *CONFIGS[name], *budget, "--epochs", "1000", "--seed", str(seed),
        "--out", str(out), "--log-every", str(LOG_EVERY), "--checkpoint-every", str(10**9),
        *(["--resume"] if resume else []))
    seconds = time.perf_counter() - began
    step = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    batch = json.loads((out / "config.json").read_text())["batch_size"]
    return {"steps": step, "images": step * batch, "seconds": round(seconds, 1),
            "cpu_seconds": round(_child_cpu() - cpu, 1)}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished subprocesses, user + system
    return usage.ru_utime + usage.ru_stime


def score(run: Path, n: int, ema: bool, out: Path) -> dict:
    gan("eval", str(run), "-n", str(n), "--features", "classifier", "--out", str(out),
        *([] if ema else ["--no-ema"]))
    r = json.loads(out.read_text())
    keep = ("fid", "kid_mean", "kid_std", "precision", "recall")
    scores = {k: r[k] for k in keep}
    if "mean_class_accuracy" in r.get("classifier", {}):  # conditional: asked-for class hit
        scores["class_accuracy"] = r["classifier"]["mean_class_accuracy"]
    return scores


def _equal_time(name: str, totals: list[float], run: Path, args: argparse.Namespace
                ) -> list[dict]:
    """One run of a recipe through rising total budgets (none: no run), scored after each."""
    rows: list[dict] = []
    for total in totals:
        spent = rows[-1]["budget_seconds"] if rows else 0.0
        leg = ["--max-seconds", str(total - spent)]
        row = {"budget": "equal_time", "budget_seconds": total, "config": name,
               "flags": CONFIGS[name], **train(name, leg, run, args.seed, resume=bool(rows))}
        for k in ("seconds", "cpu_seconds"):  # a leg's figures -> the run's totals
            row[k] = round(row[k] + (rows[-1][k] if rows else 0.0), 1)
        rows.append(_scored(row, run, args, f"equal_time-{total:g}s-{name}"))
    return rows


def _scored(row: dict, run: Path, args: argparse.Namespace, label: str) -> dict:
    """The row with its EMA and raw generators' scores; the run's newest grid copied to --out."""
    for ema in (True, False):
        row["ema" if ema else "raw"] = score(run, args.n, ema, run / "eval.json")
    print(json.dumps(row), file=sys.stderr, flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        grid = max((run / "samples").glob("step-*.png"), key=lambda p: int(p.stem.split("-")[1]))
        shutil.copy(grid, args.out / f"{label}.png")
    return row


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _budgets(ap: argparse.ArgumentParser, text: str) -> list[float]:
    """--seconds as a rising list of positive totals; 0 is none."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if parts == [0.0]:
        return []
    if not parts or min(parts) <= 0 or any(a >= b for a, b in zip(parts, parts[1:], strict=False)):
        ap.error(f"--seconds needs rising positive budgets like 300,1800, got {text!r}")
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", default="300", help="equal wall-clock budgets (comma list of "
                    "totals: one run per recipe, resumed from one budget to the next)")
    ap.add_argument("--images", type=int, default=32000, help="equal training-image budget")
    ap.add_argument("-n", type=int, default=10000, help="generated images per evaluation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", help="compare architectures instead (comma list: mlp,dcgan)")
    ap.add_argument("--recipe", help="compare these configurations (comma list; today is the "
                    "default recipe, others are built-in names or --candidate names)")
    ap.add_argument("--candidate", action="append", default=[], metavar='NAME="FLAGS"',
                    help="a candidate recipe: gan train flags on top of the defaults (repeatable)")
    ap.add_argument("--longer", action="append", default=[], metavar="NAME=SECONDS",
                    help="take this recipe's run on to a further total budget (repeatable)")
    ap.add_argument("--out", type=Path, help="also write quality.json and sample grids here")
    args = ap.parse_args()
    for text in args.candidate:
        name, sep, flags = text.partition("=")
        if not sep or not name or name in CONFIGS or name in ALIASES:
            ap.error(f"--candidate needs NAME=FLAGS with a new NAME, got {text!r}")
        CONFIGS[name] = shlex.split(flags)
    names = ["default-32px", "textbook-64px"]
    if args.recipe:
        names = [ALIASES.get(r, r) for r in args.recipe.split(",")]
        unknown = [r for r in names if r not in CONFIGS]
        if unknown:
            ap.error(f"unknown --recipe {unknown}: use today, {', '.join(CONFIGS)}")
    if args.arch:
        unknown = set(args.arch.split(",")) - set(ARCH_CONFIGS)
        if unknown:
            ap.error(f"unknown --arch {sorted(unknown)}: use {', '.join(ARCH_CONFIGS)}")
        names = [ARCH_CONFIGS[a] for a in args.arch.split(",")]
    names = list(dict.fromkeys(names))  # one run folder per configuration
    seconds = _budgets(ap, args.seconds)
    if args.longer and not seconds:
        ap.error("--longer takes a run past the last --seconds budget: give --seconds too")
    longer = {}
    for text in args.longer:
        name, sep, total = text.partition("=")
        name = ALIASES.get(name, name)
        if not sep or name not in names or not _positive(total) or seconds and \
                float(total) <= seconds[-1]:
            ap.error(f"--longer needs NAME=SECONDS for a compared recipe and more seconds than "
                     f"the last --seconds budget, got {text!r}")
        longer[name] = float(total)
    load_at_start = os.getloadavg()  # other work on the machine skews equal-time budgets
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results += _equal_time(name, [*seconds, *([longer[name]] if name in longer else [])],
                                   Path(tmp) / f"equal_time-{name}", args)
        for name in names if args.images else []:
            run = Path(tmp) / f"equal_images-{name}"
            steps = ["--max-steps", str(max(1, args.images // batch_of(name)))]
            row = {"budget": "equal_images", "config": name, "flags": CONFIGS[name],
                   **train(name, steps, run, args.seed)}
            results.append(_scored(row, run, args, f"equal_images-{name}"))
    report = {"benchmark": "quality", "argv": sys.argv[1:], "features": "classifier", "n": args.n,
              "dataset": "fashion-mnist", "seed": args.seed,
              "machine": {**machine("cpu"), "platform": platform.platform(),
                          "load_average_start_end": [load_at_start, os.getloadavg()]},
              "results": results}
    text = json.dumps(report, indent=2)
    if args.out:
        (args.out / "quality.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
