"""The `gan` command: one typer app joining each package's commands.

Each package's `cli` module only imports typer and its config (never torch, onnxruntime or grpc at
import time), so `gan --help` and every `gan CMD --help` answer at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer
from rich.logging import RichHandler

from gan.errors import UserError

# Modules with a `register(app)` function adding their commands.
COMMAND_MODULES = ("train.cli", "export.cli", "quality.cli", "serve.cli")

app = typer.Typer(
    name="gan",
    help="Train a DCGAN, export its generator to ONNX, and serve it over gRPC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Train a DCGAN, export its generator to ONNX, and serve it over gRPC.

    train -> export -> serve -> generate. Set GAN_DEBUG=1 for tracebacks on errors.
    """


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def setup_logging(verbose: bool = False) -> None:
    """One logging setup for every command: rich on a terminal, plain lines otherwise."""
    level = logging.DEBUG if verbose else logging.INFO
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)


def main() -> None:
    """Entry point: known errors become `error: ...` on one line and exit status 1.

    Set GAN_DEBUG=1 to see the traceback instead.
    """
    setup_logging(verbose=bool(os.environ.get("GAN_VERBOSE")))
    try:
        app()
    except (UserError, OSError) as e:  # OSError: a read-only --out, a full disk, a missing folder
        if os.environ.get("GAN_DEBUG"):
            raise
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror}{where}"
    return " ".join(str(e).split())


if __name__ == "__main__":
    main()
