"""`gan export`, `gan export-triton` and `gan info`: flags override ExportConfig / TritonConfig;
help texts are their docstrings.

Only typer and the config are imported here; torch, onnx and onnxruntime load when a command runs.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from export.config import PRECISIONS, ExportConfig, TritonConfig, parse_batch_sizes
from gan.choices import PROVIDERS
from gan.contract import OUTPUTS
from gan.fielddoc import choices, help_for, plain

Output = choices("Output", OUTPUTS)
Precision = choices("Precision", PRECISIONS)
Provider = choices("Provider", PROVIDERS)
_D = ExportConfig(checkpoint="")  # the defaults, so flags and config never disagree


def _h(name: str) -> str:
    return help_for(ExportConfig, name)


def export(
    checkpoint: Annotated[Path, typer.Argument(help=_h("checkpoint"), show_default=False)],
    out: Annotated[Path, typer.Option(help=_h("out"))] = Path(_D.out),
    opset: Annotated[int, typer.Option(help=_h("opset"))] = _D.opset,
    output: Annotated[Output, typer.Option(help=_h("output"))] = _D.output,  # type: ignore[valid-type, assignment]
    precision: Annotated[Precision, typer.Option(help=_h("precision"))] = _D.precision,  # type: ignore[valid-type, assignment]
    check: Annotated[bool, typer.Option(help=_h("check"))] = _D.check,
    batch_sizes: Annotated[str, typer.Option(help=_h("batch_sizes"))] = ",".join(
        map(str, _D.batch_sizes)),
    providers: Annotated[Provider, typer.Option(help=_h("providers"))] = _D.providers,  # type: ignore[valid-type, assignment]
    seed: Annotated[int, typer.Option(help=_h("seed"))] = _D.seed,
    ema: Annotated[bool, typer.Option(help=_h("ema"))] = _D.ema,
    tolerance: Annotated[float, typer.Option(help=_h("tolerance"))] = _D.tolerance,
) -> None:
    """Export a checkpoint's generator to one self-describing ONNX file and prove parity.

    The model replaces --out only after its parity check passed; the report is written beside it.
    """
    config = ExportConfig(
        checkpoint=str(checkpoint), out=str(out), opset=opset, output=plain(output),
        precision=plain(precision), check=check, batch_sizes=parse_batch_sizes(batch_sizes),
        providers=plain(providers), seed=seed, ema=ema, tolerance=tolerance)

    from export.artifact import export as run_export  # torch loads here, not at `gan --help`

    result = run_export(config)
    if result.report is not None:
        for line in result.report.lines():
            typer.echo(line)
    for line in export_summary(result.model, result.size_bytes, result.report_path):
        typer.echo(line)


def export_summary(model: Path, size_bytes: int, report: Path | None) -> list[str]:
    """Where the model is, its parity report, and what to run next."""
    return [f"wrote {model} ({size_bytes / 1e6:.2f} MB)"
            + (f", parity report {report}" if report else " (parity not checked: --no-check)"),
            "next: serve it, make a picture without a server, or score it:",
            f"  gan serve {model} --port 50051",
            f"  gan generate --model {model} -n 64 --out {model.parent / 'grid.png'}",
            f"  gan eval {model}"]


def info(
    model: Annotated[Path, typer.Argument(help="An ONNX model written by `gan export`.",
                                          show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print what a model says about itself: metadata, inputs and outputs, size.

    Exits 1 when the file is not a generator `gan serve` would serve (a foreign ONNX model is
    still shown, and the last line says why it is not one of ours)."""
    from export.info import describe
    from gan.errors import UserError

    d = describe(model)
    if as_json:
        typer.echo(json.dumps(d, indent=2))
    else:
        _print_tables(d)
    if d["problem"]:
        raise UserError(d["problem"])


def _print_tables(d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    head = Table(title=f"{d['path']}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("size", f"{d['size_bytes']:,} bytes ({d['parameters']:,} parameters)")
    head.add_row("sha256", d["sha256"])
    head.add_row("opsets", ", ".join(f"{k} {v}" for k, v in d["opsets"].items()))
    head.add_row("producer", d["producer"])
    head.add_row("operators", ", ".join(d["operators"]))
    head.add_row("dcgan-forge model", "yes" if d["dcgan_forge"] else "no (see below)")
    p = d["parity"]
    head.add_row("parity", "not checked (no matching .parity.json)" if p is None else
                 f"{'PASS' if p['passed'] else 'FAIL'} on {p['provider']}: max |diff| "
                 f"{p['max_abs_diff']:.3g} {p['unit']}s (tolerance {p['tolerance']:g})")
    console.print(head)
    io = Table(title="inputs and outputs", title_justify="left")
    for col in ("", "name", "dtype", "shape"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            shape = escape("[" + ", ".join(map(str, t["shape"])) + "]")  # [ ] is rich markup
            io.add_row(kind[:-1], t["name"], t["dtype"], shape)
    console.print(io)
    meta = Table(title="metadata", title_justify="left")
    meta.add_column("key", style="bold")
    meta.add_column("value", overflow="fold")
    for key, value in d["metadata"].items():
        meta.add_row(escape(key), escape(value))
    console.print(meta)


_T = TritonConfig(model="")


_t = functools.partial(help_for, TritonConfig)


def export_triton(
    model: Annotated[Path, typer.Argument(help=_t("model"), show_default=False)],
    repo: Annotated[Path, typer.Option(help=_t("repo"))] = Path(_T.repo),
    name: Annotated[str | None, typer.Option(help=_t("name"), show_default=False)] = _T.name,
    max_batch_size: Annotated[int, typer.Option(help=_t("max_batch_size"))] = _T.max_batch_size,
    tensorrt: Annotated[bool, typer.Option(help=_t("tensorrt"))] = _T.tensorrt,
    instances: Annotated[int, typer.Option(help=_t("instances"))] = _T.instances,
    trt_cache_dir: Annotated[str, typer.Option(help=_t("trt_cache_dir"))] = _T.trt_cache_dir,
) -> None:
    """Write a Triton Inference Server model repository entry (config.pbtxt + 1/model.onnx)
    for ONNX Runtime; an existing entry of that name is replaced whole."""
    config = TritonConfig(model=str(model), repo=str(repo), name=name,
                          max_batch_size=max_batch_size, tensorrt=tensorrt, instances=instances,
                          trt_cache_dir=trt_cache_dir)

    from export.triton import summary, write_repository  # onnx loads here

    typer.echo(summary(write_repository(config), config))


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command(name="export-triton")(export_triton)
    app.command()(info)
