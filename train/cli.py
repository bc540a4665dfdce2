"""`gan train`: flags override TrainConfig's defaults; help texts are the config's docstrings.

Only typer and the config are imported here; torch loads when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gan.fielddoc import choices, help_for, plain
from train.config import (
    ARCHS,
    D_NORMS,
    DATASETS,
    DEVICES,
    LOSSES,
    PRECISIONS,
    SPLITS,
    ConfigError,
    TrainConfig,
)

_D = TrainConfig()  # the defaults, so flags and config never disagree


Arch = choices("Arch", ARCHS)
Dataset = choices("Dataset", DATASETS)
Loss = choices("Loss", LOSSES)
Precision = choices("Precision", PRECISIONS)
Device = choices("Device", DEVICES)
Split = choices("Split", SPLITS)
DNorm = choices("DNorm", D_NORMS)


def _h(name: str) -> str:
    return help_for(TrainConfig, name)


def widths(text: str) -> tuple[int, ...]:
    """"512,256" -> (512, 256): hidden widths as a comma list."""
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ConfigError(f"hidden widths must be a comma list of integers like 512,256, got "
                          f"{text!r}") from None


def _w(name: str) -> str:  # a tuple default shown as the comma list the option takes
    return ",".join(map(str, getattr(_D, name)))


def train(
    ctx: typer.Context,
    dataset: Annotated[Dataset, typer.Option(help=_h("dataset"))] = _D.dataset,  # type: ignore[valid-type, assignment]
    data_dir: Annotated[str | None, typer.Option(help=_h("data_dir"))] = _D.data_dir,
    split: Annotated[Split, typer.Option(help=_h("split"))] = _D.split,  # type: ignore[valid-type, assignment]
    arch: Annotated[Arch, typer.Option(help=_h("arch"))] = _D.arch,  # type: ignore[valid-type, assignment]
    # 0 is the field's default; _D.image_size is already resolved (to dcgan's 32)
    image_size: Annotated[int, typer.Option(help=_h("image_size"))] = 0,
    channels: Annotated[int, typer.Option(help=_h("channels"))] = _D.channels,
    nz: Annotated[int, typer.Option(help=_h("nz"))] = _D.nz,
    ngf: Annotated[int, typer.Option(help=_h("ngf"))] = _D.ngf,
    ndf: Annotated[int, typer.Option(help=_h("ndf"))] = _D.ndf,
    mlp_hidden_g: Annotated[str, typer.Option(help=_h("mlp_hidden_g"))] = _w("mlp_hidden_g"),
    mlp_hidden_d: Annotated[str, typer.Option(help=_h("mlp_hidden_d"))] = _w("mlp_hidden_d"),
    mlp_batch_norm: Annotated[bool, typer.Option(help=_h("mlp_batch_norm"))] = _D.mlp_batch_norm,
    loss: Annotated[Loss, typer.Option(help=_h("loss"))] = _D.loss,  # type: ignore[valid-type, assignment]
    d_steps: Annotated[int, typer.Option(help=_h("d_steps"))] = _D.d_steps,
    d_norm: Annotated[DNorm, typer.Option(help=_h("d_norm"))] = _D.d_norm,  # type: ignore[valid-type, assignment]
    spectral_norm: Annotated[bool, typer.Option(help=_h("spectral_norm"))] = _D.spectral_norm,
    gp_weight: Annotated[float, typer.Option(help=_h("gp_weight"))] = _D.gp_weight,
    clip_value: Annotated[float, typer.Option(help=_h("clip_value"))] = _D.clip_value,
    lr_g: Annotated[float, typer.Option(help=_h("lr_g"))] = _D.lr_g,
    lr_d: Annotated[float, typer.Option(help=_h("lr_d"))] = _D.lr_d,
    beta1: Annotated[float, typer.Option(help=_h("beta1"))] = _D.beta1,
    beta2: Annotated[float, typer.Option(help=_h("beta2"))] = _D.beta2,
    batch_size: Annotated[int, typer.Option(help=_h("batch_size"))] = _D.batch_size,
    epochs: Annotated[int, typer.Option(help=_h("epochs"))] = _D.epochs,
    max_steps: Annotated[int, typer.Option(help=_h("max_steps"))] = _D.max_steps,
    max_seconds: Annotated[float, typer.Option(help=_h("max_seconds"))] = _D.max_seconds,
    precision: Annotated[Precision, typer.Option(help=_h("precision"))] = _D.precision,  # type: ignore[valid-type, assignment]
    channels_last: Annotated[bool, typer.Option(help=_h("channels_last"))] = _D.channels_last,
    compile: Annotated[bool, typer.Option(help=_h("compile"))] = _D.compile,
    device: Annotated[Device, typer.Option(help=_h("device"))] = _D.device,  # type: ignore[valid-type, assignment]
    seed: Annotated[int, typer.Option(help=_h("seed"))] = _D.seed,
    out: Annotated[Path, typer.Option(help=_h("out"))] = Path(_D.out),
    log_every: Annotated[int, typer.Option(help=_h("log_every"))] = _D.log_every,
    checkpoint_every: Annotated[int, typer.Option(
        help=_h("checkpoint_every"))] = _D.checkpoint_every,
    keep_checkpoints: Annotated[int, typer.Option(
        help=_h("keep_checkpoints"))] = _D.keep_checkpoints,
    num_samples: Annotated[int, typer.Option(help=_h("num_samples"))] = _D.num_samples,
    sample_scale: Annotated[int, typer.Option(help=_h("sample_scale"))] = _D.sample_scale,
    conditional: Annotated[bool, typer.Option(help=_h("conditional"))] = _D.conditional,
    label_dim: Annotated[int, typer.Option(help=_h("label_dim"))] = _D.label_dim,
    class_weight: Annotated[float | None, typer.Option(
        help=_h("class_weight"), show_default=False)] = _D.class_weight,
    mode_seeking: Annotated[float | None, typer.Option(
        help=_h("mode_seeking"), show_default=False)] = _D.mode_seeking,
    ema_decay: Annotated[float, typer.Option(help=_h("ema_decay"))] = _D.ema_decay,
    ema_start: Annotated[int, typer.Option(help=_h("ema_start"))] = _D.ema_start,
    eval_every: Annotated[int, typer.Option(help=_h("eval_every"))] = _D.eval_every,
    eval_images: Annotated[int, typer.Option(help=_h("eval_images"))] = _D.eval_images,
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out from its checkpoints/last.pt, exactly where it stopped "
             "(its saved config wins; --epochs and --max-steps may extend it).")] = False,
) -> None:
    """Train a DCGAN (or, with --arch mlp, the original fully connected GAN); writes checkpoints,
    sample grids, TensorBoard events and metrics to --out.

    The default (Fashion-MNIST, 32 px, 5 epochs: 2,340 steps) takes minutes on a CPU: see
    docs/training.md for measured times; --max-seconds sets a wall-clock budget. Under
    `torchrun --nproc-per-node N` it trains data-parallel (DDP); only rank 0 writes and logs.
    Ctrl-C or SIGTERM stops after the current step, saves last.pt and prints the resume command.
    """
    values = {k: v for k, v in locals().items() if k not in ("ctx", "resume", "out")}
    given = {k: plain(v) for k, v in values.items() if was_given(ctx, k)}
    for name in ("mlp_hidden_g", "mlp_hidden_d"):
        if name in given:
            given[name] = widths(given[name])

    from train.run import run  # torch loads here, not at `gan --help`

    run(overrides=given, out=str(out), resume=resume,
        report=lambda summary: typer.echo("\n".join(summary.lines())))


def was_given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set this option (on the command line or via its env var)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=False)(train)
