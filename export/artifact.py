"""From a checkpoint to a checked model file: export beside the target, prove parity, then replace.

The model at `--out` is only ever replaced by one that passed its parity check: the new model is
written to a temporary file in the same folder, checked there, and renamed over the old one
(os.replace is atomic on one filesystem). A failed check leaves the old model and its report as
they were and writes the failing report to <name>.parity-failed.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from export import parity
from export.config import ExportConfig
from export.onnx import to_onnx
from gan import session
from gan.atomic import atomic_write
from gan.contract import metadata, sha256_file
from gan.errors import UserError
from train import checkpoint

log = logging.getLogger(__name__)


class ParityError(UserError):
    """The exported model does not reproduce the PyTorch generator within tolerance."""


@dataclass
class ExportResult:
    """What one export wrote."""

    model: Path
    report_path: Path | None  # None with check=False
    report: parity.ParityReport | None
    size_bytes: int


def report_path(model: Path, failed: bool = False) -> Path:
    """model.onnx -> model.parity.json (or model.parity-failed.json)."""
    return model.with_suffix(".parity-failed.json" if failed else ".parity.json")


def export(config: ExportConfig) -> ExportResult:
    """Export config.checkpoint to config.out, checked; raise ParityError if the check fails."""
    if config.check:
        session.wanted(config.providers)  # a provider that cannot run here fails before export
    source = checkpoint.resolve(config.checkpoint)
    ckpt = checkpoint.load(source)
    generator = checkpoint.build_generator(ckpt, ema=config.ema)
    kind = checkpoint.generator_kind(ckpt, ema=config.ema)
    class_names = list(ckpt.get("class_names", [])) if generator.num_classes else []
    meta = metadata(ckpt["config"], output=config.output, precision=config.precision,
                    opset=config.opset, step=int(ckpt["step"]),
                    checkpoint_sha256=sha256_file(source), class_names=class_names,
                    generator=kind) | config.extra
    log.info("exporting %s (step %s, %s generator%s) to %s: %s %s, opset %d", source,
             ckpt["step"], kind, f", {len(class_names)} classes" if class_names else "",
             config.out, config.precision, config.output, config.opset)
    model = to_onnx(generator, output=config.output, opset=config.opset,
                    precision=config.precision, meta=meta)
    out = Path(config.out)
    report: parity.ParityReport | None = None

    def prove(tmp: Path) -> None:  # runs on the complete new file, before it replaces `out`
        nonlocal report
        if not config.check:
            return
        report = parity.check(generator, tmp, output=config.output, precision=config.precision,
                              batch_sizes=config.batch_sizes, providers=config.providers,
                              seed=config.seed, cache_dir=str(out.with_suffix(".trt-cache")),
                              tolerance=config.tolerance)
        report.model = str(out)
        if not report.passed:
            _write_report(report_path(out, failed=True), report)
            raise ParityError(_failure(report, out))

    atomic_write(out, lambda f: f.write(model.SerializeToString()), check=prove)
    rpath = None
    if report is not None:
        rpath = report_path(out)
        _write_report(rpath, report)
    else:  # --no-check: an older report describes another file
        report_path(out).unlink(missing_ok=True)
    report_path(out, failed=True).unlink(missing_ok=True)
    return ExportResult(model=out, report_path=rpath, report=report,
                        size_bytes=out.stat().st_size)


def _write_report(path: Path, report: parity.ParityReport) -> None:
    atomic_write(path, lambda f: f.write(report.to_json().encode()))


def _failure(report: parity.ParityReport, out: Path) -> str:
    worst = max(report.batches, key=lambda b: b.max_abs_diff)
    return (f"parity check failed on {report.provider}: max |diff| {worst.max_abs_diff:.3g} "
            f"{report.unit}s at batch {worst.batch_size} (tolerance {report.bound}, "
            f"batch independence {report.batch_independence_max_abs_diff:.3g}); {out} was left "
            f"as it was, details in {report_path(out, failed=True)}")
