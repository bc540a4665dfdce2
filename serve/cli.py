"""`gan serve` and `gan generate`: flags override ServeConfig / GenerateConfig defaults; help
texts are the configs' docstrings.

Only typer and the configs are imported here; onnxruntime and grpc load when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gan.choices import PROVIDERS
from gan.fielddoc import choices, help_for
from serve.config import GenerateConfig, ServeConfig

_S = ServeConfig()
Provider = choices("Provider", PROVIDERS)


def _h(name: str) -> str:
    return help_for(ServeConfig, name)


def _g(name: str) -> str:
    return help_for(GenerateConfig, name)


def serve(
    model: Annotated[Path, typer.Argument(help=_h("model"), show_default=False)],
    host: Annotated[str, typer.Option(help=_h("host"))] = _S.host,
    port: Annotated[int, typer.Option(help=_h("port"))] = _S.port,
    providers: Annotated[Provider, typer.Option(help=_h("providers"))] = _S.providers,  # type: ignore[valid-type, assignment]
    fp16: Annotated[bool, typer.Option(help=_h("fp16"))] = _S.fp16,
    trt_cache_dir: Annotated[str | None, typer.Option(help=_h("trt_cache_dir"))] = None,
    max_batch_size: Annotated[int, typer.Option(help=_h("max_batch_size"))] = _S.max_batch_size,
    max_queue_delay_ms: Annotated[float, typer.Option(help=_h("max_queue_delay_ms"))] = (
        _S.max_queue_delay_ms),
    max_queue_size: Annotated[int, typer.Option(help=_h("max_queue_size"))] = _S.max_queue_size,
    max_images_per_request: Annotated[int, typer.Option(help=_h("max_images_per_request"))] = (
        _S.max_images_per_request),
    max_message_mb: Annotated[int, typer.Option(help=_h("max_message_mb"))] = _S.max_message_mb,
    intra_op_threads: Annotated[int, typer.Option(help=_h("intra_op_threads"))] = (
        _S.intra_op_threads),
    encode_threads: Annotated[int, typer.Option(help=_h("encode_threads"))] = _S.encode_threads,
    rpc_threads: Annotated[int, typer.Option(help=_h("rpc_threads"))] = _S.rpc_threads,
    grace_s: Annotated[float, typer.Option(help=_h("grace_s"))] = _S.grace_s,
    metrics_port: Annotated[int | None, typer.Option(help=_h("metrics_port"))] = None,
    http_port: Annotated[int | None, typer.Option(help=_h("http_port"))] = None,
    model_name: Annotated[str, typer.Option(help=_h("model_name"))] = "",
) -> None:
    """Serve an exported generator over gRPC (gan.v1.Generator and the Open Inference
    Protocol's inference.GRPCInferenceService, optionally v2 HTTP too) with dynamic batching.

    Prints the bound address once the model is loaded and warmed up; SIGTERM or Ctrl-C drains
    in-flight requests (within --grace-s) and exits 0.
    """
    values = {k: v for k, v in locals().items()}
    values["model"] = str(model)
    values["providers"] = providers.value  # type: ignore[attr-defined]
    config = ServeConfig(**values)

    from serve.server import run_until_signal  # grpc and onnxruntime load here

    def announce(server) -> None:  # the one line scripts wait for
        line = f"serving {server.model.info.model_id} on {server.address}"
        if server.http_port is not None:
            line += f" (v2 HTTP on http://{config.host}:{server.http_port}/)"
        if server.metrics_port is not None:  # last: scripts take the line's last word
            line += f" (metrics on http://{config.host}:{server.metrics_port}/metrics)"
        print(line, flush=True)

    run_until_signal(config, on_started=announce)


def generate(
    num_images: Annotated[int | None, typer.Option("--num-images", "-n", help=_g("num_images"),
                                                   show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help=_g("seed"))] = None,
    label: Annotated[str | None, typer.Option(help=_g("label"))] = None,
    interpolate: Annotated[tuple[int, int] | None, typer.Option(
        help=_g("interpolate"), metavar="SEED_A SEED_B", show_default=False)] = None,
    steps: Annotated[int, typer.Option(help=_g("steps"))] = 10,
    server: Annotated[str | None, typer.Option(help=_g("server"))] = None,
    model: Annotated[str | None, typer.Option(help=_g("model"))] = None,
    out: Annotated[str | None, typer.Option(help=_g("out"))] = None,
    out_dir: Annotated[str | None, typer.Option(help=_g("out_dir"))] = None,
    nrow: Annotated[int, typer.Option(help=_g("nrow"))] = 0,
    timeout_s: Annotated[float, typer.Option(help=_g("timeout_s"))] = 60.0,
    providers: Annotated[Provider, typer.Option(help=_g("providers"))] = "cpu",  # type: ignore[valid-type, assignment]
) -> None:
    """Generate images through a running `gan serve` (--server) or a local ONNX file (--model).

    The same seed and --label give the same images either way. --interpolate: seed to seed.
    """
    values = {k: v for k, v in locals().items()}
    values["providers"] = getattr(providers, "value", providers)
    config = GenerateConfig(**values)

    from serve.generation import run  # grpc / onnxruntime load here

    made, written = run(config)
    where = config.server or config.model
    print(f"wrote {len(written)} file(s) for {config.count} images from {where} "
          f"({made}): {', '.join(map(str, written[:3]))}{' ...' if len(written) > 3 else ''}")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(generate)
