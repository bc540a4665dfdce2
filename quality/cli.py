"""`gan eval`: flags override EvalConfig; help texts are its docstrings.

Only typer and the config are imported here; torch and onnxruntime load when the command runs.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gan.choices import PROVIDERS
from gan.fielddoc import choices, help_for, plain
from quality.config import FEATURES, EvalConfig

Provider = choices("Provider", PROVIDERS)
Features = choices("Features", FEATURES)
_E = EvalConfig(source="")  # the defaults, so flags and config never disagree
_e = functools.partial(help_for, EvalConfig)  # a field's docstring as its --help text


def evaluate(
    source: Annotated[Path, typer.Argument(help=_e("source"), show_default=False)],
    num_images: Annotated[int, typer.Option("-n", "--num-images",
                                            help=_e("num_images"))] = _E.num_images,
    features: Annotated[Features, typer.Option(help=_e("features"))] = _E.features,  # type: ignore[valid-type, assignment]
    inception_weights: Annotated[str | None, typer.Option(
        help=_e("inception_weights"))] = _E.inception_weights,
    ema: Annotated[bool, typer.Option(help=_e("ema"))] = _E.ema,
    seed: Annotated[int, typer.Option(help=_e("seed"))] = _E.seed,
    data_dir: Annotated[str | None, typer.Option(help=_e("data_dir"))] = _E.data_dir,
    providers: Annotated[Provider, typer.Option(help=_e("providers"))] = _E.providers,  # type: ignore[valid-type, assignment]
    device: Annotated[str, typer.Option(help=_e("device"))] = _E.device,
    out: Annotated[str | None, typer.Option(help=_e("out"))] = _E.out,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Score a generator: FID, KID, precision and recall against the real test split (and, for a
    conditional model, how often the dataset classifier agrees with the asked-for class)."""
    config = EvalConfig(source=str(source), num_images=num_images, features=plain(features),
                        inception_weights=inception_weights, ema=ema, seed=seed,
                        data_dir=data_dir, providers=plain(providers), device=device, out=out)

    from quality.evaluation import run  # torch loads here, not at `gan --help`

    report, path = run(config)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for line in summary(report):
        typer.echo(line)
    typer.echo(f"wrote {path}")


def summary(r: dict[str, Any]) -> list[str]:
    """A few lines for people; the JSON has everything."""
    f = r["features"]
    lines = [f"{r['n_fake']} generated vs {r['n_real']} real {r['split']} images, "
             f"{f['name']} features ({f.get('dim', '?')}-d)",
             f"  FID        {r['fid']:.4g}",
             f"  KID        {r['kid_mean']:.4g} +- {r['kid_std']:.2g}",
             f"  precision  {r['precision']:.3f}",
             f"  recall     {r['recall']:.3f}"]
    c = r.get("classifier", {})
    if "mean_class_accuracy" in c:
        worst = min(c["class_accuracy"].items(), key=lambda kv: kv[1])
        lines.append(f"  class accuracy {c['mean_class_accuracy']:.3f} (generated images the "
                     f"classifier calls their asked-for class; lowest: {worst[0]} "
                     f"{worst[1]:.3f}; the classifier's own test accuracy "
                     f"{c['test_accuracy']:.3f})")
    return lines


def register(app: typer.Typer) -> None:
    app.command(name="eval")(evaluate)
