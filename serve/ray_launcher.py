"""`gan serve MODEL --ray`: join (or start) a Ray cluster, deploy the Ray Serve application, wait
for every replica, announce, and on SIGTERM/SIGINT delete the application (and stop a Ray this
command started).

The gRPC port is Ray Serve's gRPC proxy (it listens on every interface, whatever --host says);
Ray Serve's HTTP proxy, which this application does not use, gets a free port on --host.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from gan.errors import UserError
from gan.model import read_info
from serve.config import ServeConfig, ServeConfigError
from serve.model import default_threads
from serve.ray_config import APP_NAME, RayConfig

log = logging.getLogger(__name__)

# A local Ray for one command: small, since replicas keep their images out of the object store
# (answers of a few MB at most) and the machine may be shared.
OBJECT_STORE_BYTES = 200 * 2**20
READY_TIMEOUT_S = 120.0
# Ray Serve gives a starting proxy actor 5 s to report ready and kills it after that, which
# fails serve.start outright on a loaded machine (the proxy's worker takes longer to import);
# a Ray started here passes its processes this longer bound (they inherit the environment).
PROXY_READY_ENV = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
# Settings of the plain server's own listeners, which replicas do not have: refused with --ray.
_PLAIN_SERVER_ONLY = {
    "metrics_port": "Ray Serve exports its own metrics (ray_serve_*)",
    "http_port": "the replicas answer gan.v1 through Ray Serve's gRPC proxy only",
    "tls_cert": "Ray Serve's gRPC proxy listens without TLS: put TLS in front of it",
}  # the proxy answering GetModelInfo, after every replica reported ready


def free_port(host: str) -> int:
    """A port that is free on `host` now (Ray's proxies cannot bind port 0 and report it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host.strip("[]"), 0))
        return s.getsockname()[1]


def run_on_ray(config: ServeConfig, ray_config: RayConfig, requested: bool,
               on_started: Callable[[str, str, str], None]) -> None:
    """Deploy, call `on_started(model_id, address, where)` once the proxy answers (`where`:
    "Ray at GCS-ADDRESS, dashboard URL"), wait for SIGTERM or SIGINT, tear down.
    `requested`: --ray was given (the Ray flags need it)."""
    if not requested:
        raise ServeConfigError("--replicas, --autoscale, --ray-address and --replica-cpus go "
                               "with --ray")
    for name, why in _PLAIN_SERVER_ONLY.items():  # getattr: fields other work may add
        if getattr(config, name, None) is not None:
            raise ServeConfigError(f"--{name.replace('_', '-')} does not go with --ray: {why}")
    started_ray = ray_config.ray_address is None
    if started_ray or os.path.isfile(config.model):  # on a remote cluster it may live elsewhere
        read_info(config.model)  # a bad file fails here with the plain server's one-line error
        # replicas are other processes, maybe in another folder
        config = dataclasses.replace(config, model=os.path.abspath(config.model))
    try:
        import ray
        import ray.serve  # noqa: F401  (the serve extra of ray)
    except ImportError:
        raise UserError("--ray needs Ray Serve: pip install 'dcgan-forge[ray]'") from None
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        dashboard = _init_ray(ray_config)
        for s in previous:  # ray.init may install its own handlers
            signal.signal(s, handle)
        try:
            address = _deploy(config, ray_config)
            model_id = _wait_until_answering(address)
            if not stop.is_set():
                where = f"Ray at {ray.get_runtime_context().gcs_address}, dashboard {dashboard}"
                on_started(model_id, address, where)
            stop.wait()
        finally:
            _tear_down(started_ray)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _init_ray(ray_config: RayConfig) -> str:
    """Join or start Ray; -> its dashboard's URL (`serve status -a URL` reads it)."""
    import ray

    if ray_config.ray_address is not None:
        log.info("joining the Ray cluster at %s", ray_config.ray_address)
        context = ray.init(address=ray_config.ray_address, namespace="serve",
                           log_to_driver=False)
    else:
        low, high = ray_config.bounds()
        cpus = max(default_threads(), math.ceil(high * ray_config.replica_cpus))  # logical
        os.environ.setdefault(PROXY_READY_ENV, "60")  # a user's own setting wins
        context = ray.init(address="local", num_cpus=cpus, namespace="serve",
                           object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False,
                           include_dashboard=True, dashboard_host="127.0.0.1",
                           dashboard_port=free_port("127.0.0.1"))
        log.info("started a local Ray (%d CPUs) at %s", cpus,
                 ray.get_runtime_context().gcs_address)
    url = context.dashboard_url or ""
    return url if not url or "://" in url else f"http://{url}"


def _deploy(config: ServeConfig, ray_config: RayConfig) -> str:
    """Start Serve with the gRPC proxy, deploy the application and wait for its replicas;
    -> the proxy's "host:port"."""
    import ray
    from ray import serve as ray_serve

    from serve.ray_app import ADD_SERVICER, bind

    port = config.port or free_port(config.host)
    try:
        ray_serve.start(http_options={"host": config.host, "port": free_port(config.host)},
                        grpc_options={"port": port, "grpc_servicer_functions": [ADD_SERVICER]})
    except ray.exceptions.RayError as e:  # e.g. a proxy actor that died while starting
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(f"Ray Serve could not start its proxies: {first.strip()} (a loaded "
                        f"machine? see the Ray logs; {PROXY_READY_ENV} "
                        "gives them longer)") from None
    low, high = ray_config.bounds()
    log.info("deploying %s on Ray Serve: %s replicas", config.model,
             low if low == high else f"{low} to {high}")
    try:  # returns once every replica reported ready; a failed replica start raises
        ray_serve.run(bind(config, ray_config), name=APP_NAME, route_prefix=f"/{APP_NAME}",
                      blocking=False)
    except RuntimeError as e:
        first = next((line for line in str(e).splitlines() if line.strip()), str(e))
        raise UserError(f"Ray Serve could not start the replicas: {first.strip()} (see the "
                        "Ray logs)") from None
    host = config.host
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _wait_until_answering(address: str) -> str:
    """Poll GetModelInfo through the proxy until it answers (it learns routes from Ray's
    controller a moment after the deployment is up); -> the model id."""
    import grpc

    from serve.client import GeneratorClient
    from serve.ray_app import ADD_SERVICER

    deadline = time.monotonic() + READY_TIMEOUT_S
    with GeneratorClient(address, timeout_s=10) as client:
        while True:
            try:
                return client.model_info().model_id
            except grpc.RpcError as e:
                if time.monotonic() > deadline:
                    raise UserError(
                        f"Ray Serve's gRPC proxy on {address} never answered ({e.code().name}: "
                        f"{e.details()}): if Serve was already running on that cluster, start "
                        f"it with --grpc-servicer-functions {ADD_SERVICER}") from None
            time.sleep(0.2)


def _tear_down(started_ray: bool) -> None:
    """Delete the application (Ray drains each replica for graceful_shutdown_timeout_s), then
    stop Serve and Ray if this command started them, or just disconnect."""
    import ray
    from ray import serve as ray_serve

    log.info("shutting down the Ray Serve application")
    try:
        ray_serve.delete(APP_NAME)
        if started_ray:
            ray_serve.shutdown()
    finally:
        ray.shutdown()  # for a Ray started here: stops its processes
    log.info("stopped")
