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
from serve.config import RESAMPLES, GenerateConfig, ServeConfig, ServeConfigError
from serve.ray_config import RayConfig

_S = ServeConfig()
_R = RayConfig()
Provider = choices("Provider", PROVIDERS)
Resample = choices("Resample", RESAMPLES)


def _h(name: str) -> str:
    return help_for(ServeConfig, name)


def _r(name: str) -> str:
    return help_for(RayConfig, name)


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
    max_images_per_stream: Annotated[int, typer.Option(help=_h("max_images_per_stream"))] = (
        _S.max_images_per_stream),
    max_message_mb: Annotated[int, typer.Option(help=_h("max_message_mb"))] = _S.max_message_mb,
    inference_workers: Annotated[int, typer.Option(help=_h("inference_workers"))] = (
        _S.inference_workers),
    intra_op_threads: Annotated[int, typer.Option(help=_h("intra_op_threads"))] = (
        _S.intra_op_threads),
    encode_threads: Annotated[int, typer.Option(help=_h("encode_threads"))] = _S.encode_threads,
    max_concurrent_rpcs: Annotated[int, typer.Option(
        "--max-concurrent-rpcs", "--rpc-threads", help=_h("max_concurrent_rpcs"))] = (
        _S.max_concurrent_rpcs),
    max_open_streams: Annotated[int, typer.Option(help=_h("max_open_streams"))] = (
        _S.max_open_streams),
    stream_stall_s: Annotated[float, typer.Option(help=_h("stream_stall_s"))] = (
        _S.stream_stall_s),
    drain_s: Annotated[float, typer.Option(help=_h("drain_s"))] = _S.drain_s,
    grace_s: Annotated[float, typer.Option(help=_h("grace_s"))] = _S.grace_s,
    metrics_port: Annotated[int | None, typer.Option(help=_h("metrics_port"))] = None,
    metrics_host: Annotated[str, typer.Option(help=_h("metrics_host"))] = _S.metrics_host,
    tls_cert: Annotated[str | None, typer.Option(help=_h("tls_cert"))] = None,
    tls_key: Annotated[str | None, typer.Option(help=_h("tls_key"))] = None,
    tls_client_ca: Annotated[str | None, typer.Option(help=_h("tls_client_ca"))] = None,
    http_port: Annotated[int | None, typer.Option(help=_h("http_port"))] = None,
    model_name: Annotated[str, typer.Option(help=_h("model_name"))] = "",
    ray: Annotated[bool, typer.Option(help="Serve through Ray Serve's gRPC proxy, with replicas "
                                      "on a Ray cluster (needs dcgan-forge[ray]).")] = False,
    replicas: Annotated[int, typer.Option(help=_r("replicas"))] = _R.replicas,
    autoscale: Annotated[str | None, typer.Option(help=_r("autoscale"), metavar="MIN:MAX")] = None,
    ray_address: Annotated[str | None, typer.Option(help=_r("ray_address"))] = None,
    replica_cpus: Annotated[float, typer.Option(help=_r("replica_cpus"))] = _R.replica_cpus,
) -> None:
    """Serve an exported generator over gRPC (gan.v1.Generator and the Open Inference
    Protocol's inference.GRPCInferenceService, optionally v2 HTTP too) with dynamic batching.

    Prints the bound address once the model is loaded and warmed up; SIGTERM or Ctrl-C reports
    NOT_SERVING (for --drain-s), drains in-flight requests (within --grace-s) and exits 0. With
    --ray: the same API through Ray Serve, once every replica is ready.
    """
    values = {k: v for k, v in locals().items()}
    values["model"] = str(model)
    values["providers"] = providers.value  # type: ignore[attr-defined]
    ray_config = RayConfig(**{k: values.pop(k) for k in _RAY_FLAGS})
    config = ServeConfig(**{k: v for k, v in values.items() if k != "ray"})
    if ray or ray_config != _R:
        from serve.ray_launcher import run_on_ray  # Ray loads here

        def on_ray(model_id: str, address: str, where: str) -> None:
            print(f"serving {model_id} on {address} ({where})", flush=True)

        return run_on_ray(config, ray_config, ray, on_started=on_ray)

    from serve.server import run_until_signal  # grpc and onnxruntime load here

    def announce(server) -> None:  # the one line scripts wait for
        line = f"serving {server.model.info.model_id} on {server.address}"
        if server.http_port is not None:
            line += f" (v2 HTTP on http://{config.host}:{server.http_port}/)"
        if server.metrics_port is not None:  # last: scripts take the line's last word
            line += f" (metrics on http://{config.metrics_host}:{server.metrics_port}/metrics)"
        print(line, flush=True)

    run_until_signal(config, on_started=announce)


_RAY_FLAGS = ("replicas", "autoscale", "ray_address", "replica_cpus")


def generate(
    ctx: typer.Context,
    num_images: Annotated[int | None, typer.Option("--num-images", "-n", help=_g("num_images"),
                                                   show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help=_g("seed"))] = None,
    label: Annotated[str | None, typer.Option(help=_g("label"))] = None,
    interpolate: Annotated[tuple[str, str] | None, typer.Option(
        help=_g("interpolate"), metavar="SEED_A SEED_B", show_default=False)] = None,
    steps: Annotated[int, typer.Option(help=_g("steps"))] = 10,
    server: Annotated[str | None, typer.Option(help=_g("server"))] = None,
    model: Annotated[str | None, typer.Option(help=_g("model"))] = None,
    out: Annotated[str | None, typer.Option(help=_g("out"))] = None,
    out_dir: Annotated[str | None, typer.Option(help=_g("out_dir"))] = None,
    nrow: Annotated[int, typer.Option(help=_g("nrow"))] = 0,
    scale: Annotated[int, typer.Option(help=_g("scale"))] = 0,
    resample: Annotated[Resample, typer.Option(help=_g("resample"))] = "nearest",  # type: ignore[valid-type, assignment]
    timeout_s: Annotated[float, typer.Option(help=_g("timeout_s"))] = 60.0,
    tls: Annotated[bool, typer.Option(help=_g("tls"))] = False,
    tls_ca: Annotated[str | None, typer.Option(help=_g("tls_ca"))] = None,
    tls_cert: Annotated[str | None, typer.Option(help=_g("tls_cert"))] = None,
    tls_key: Annotated[str | None, typer.Option(help=_g("tls_key"))] = None,
    providers: Annotated[Provider, typer.Option(help=_g("providers"))] = "cpu",  # type: ignore[valid-type, assignment]
) -> None:
    """Generate images through a running `gan serve` (--server) or a local ONNX file (--model).

    The same seed and --label give the same images either way. --interpolate: seed to seed.
    """
    values = {k: v for k, v in locals().items() if k != "ctx"}
    values["providers"] = getattr(providers, "value", providers)
    values["interpolate"] = None if interpolate is None else _two_seeds(interpolate)
    if ctx.args:  # allowed through only so that `--interpolate 1 --out x` gets the line above
        raise ServeConfigError(f"unexpected argument {ctx.args[0]!r}: see gan generate --help")
    values["resample"] = getattr(resample, "value", resample)
    config = GenerateConfig(**values)

    from serve.generation import run  # grpc / onnxruntime load here

    made, written = run(config)
    where = config.server or config.model
    print(f"wrote {len(written)} file(s) for {config.count} images from {where} "
          f"({made}): {', '.join(map(str, written[:3]))}{' ...' if len(written) > 3 else ''}")


def _two_seeds(words: tuple[str, str]) -> tuple[int, int]:
    """--interpolate's two words as seeds, or one line saying what it takes (typer would say
    "Input should be a valid integer" about the flag that followed a single seed)."""
    try:
        return int(words[0]), int(words[1])
    except ValueError:
        raise ServeConfigError(f"--interpolate takes two seeds, e.g. --interpolate 1 2 (got "
                               f"{' '.join(words)})") from None


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command(context_settings={"allow_extra_args": True})(generate)
