"""`gan train`: flags override TrainConfig's defaults; help texts are the config's docstrings.

Only typer and the config are imported here; torch loads when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gan.fielddoc import choices, help_for, plain
from train.config import (
    D_NORMS,
    DATASETS,
    DEVICES,
    LOSSES,
    PRECISIONS,
    SPLITS,
    TrainConfig,
)

_D = TrainConfig()  # the defaults, so flags and config never disagree


Dataset = choices("Dataset", DATASETS)
Loss = choices("Loss", LOSSES)
Precision = choices("Precision", PRECISIONS)
Device = choices("Device", DEVICES)
Split = choices("Split", SPLITS)
DNorm = choices("DNorm", D_NORMS)


def _h(name: str) -> str:
    return help_for(TrainConfig, name)


def train(
    ctx: typer.Context,
    dataset: Annotated[Dataset, typer.Option(help=_h("dataset"))] = _D.dataset,  # type: ignore[valid-type, assignment]
    data_dir: Annotated[str | None, typer.Option(help=_h("data_dir"))] = _D.data_dir,
    split: Annotated[Split, typer.Option(help=_h("split"))] = _D.split,  # type: ignore[valid-type, assignment]
    image_size: Annotated[int, typer.Option(help=_h("image_size"))] = _D.image_size,
    channels: Annotated[int, typer.Option(help=_h("channels"))] = _D.channels,
    nz: Annotated[int, typer.Option(help=_h("nz"))] = _D.nz,
    ngf: Annotated[int, typer.Option(help=_h("ngf"))] = _D.ngf,
    ndf: Annotated[int, typer.Option(help=_h("ndf"))] = _D.ndf,
    loss: Annotated[Loss, typer.Option(help=_h("loss"))] = _D.loss,  # type: ignore[valid-type, assignment]
    d_steps: Annotated[int, typer.Option(help=_h("d_steps"))] = _D.d_steps,
    d_norm: Annotated[DNorm, typer.Option(help=_h("d_norm"))] = _D.d_norm,  # type: ignore[valid-type, assignment]
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
    conditional: Annotated[bool, typer.Option(help=_h("conditional"))] = _D.conditional,
    label_dim: Annotated[int, typer.Option(help=_h("label_dim"))] = _D.label_dim,
    ema_decay: Annotated[float, typer.Option(help=_h("ema_decay"))] = _D.ema_decay,
    eval_every: Annotated[int, typer.Option(help=_h("eval_every"))] = _D.eval_every,
    eval_images: Annotated[int, typer.Option(help=_h("eval_images"))] = _D.eval_images,
    resume: Annotated[bool, typer.Option(
        help="Continue the run in --out from its checkpoints/last.pt, exactly where it stopped "
             "(its saved config wins; --epochs and --max-steps may extend it).")] = False,
) -> None:
    """Train a DCGAN; writes checkpoints, sample grids, TensorBoard events and metrics to --out.

    Under `torchrun --nproc-per-node N` it trains data-parallel (DDP); only rank 0 writes.
    """
    values = {k: v for k, v in locals().items() if k not in ("ctx", "resume", "out")}
    given = {k: plain(v) for k, v in values.items() if was_given(ctx, k)}

    from train.run import run  # torch loads here, not at `gan --help`

    run(overrides=given, out=str(out), resume=resume)


def was_given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set this option (on the command line or via its env var)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=False)(train)
