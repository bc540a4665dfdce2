"""How the served model runs on Ray Serve: replicas, autoscaling, the cluster to join.

No Ray import here (only the dataclass and its checks): `gan serve --help` stays fast and the
plain serving install never needs Ray. `deployment_options` turns a RayConfig and a ServeConfig
into Ray Serve's own deployment options, the same keys a `serve deploy` YAML sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from serve.config import ServeConfig, ServeConfigError

APP_NAME = "gan"
"""The Ray Serve application's name (clients with several applications on one Serve instance
send it as the `application` metadata)."""
DEPLOYMENT_NAME = "Generator"

# With dynamic batching a replica works best with many requests in flight: Ray Serve's autoscaler
# adds replicas when the average in flight per replica passes this.
TARGET_ONGOING_REQUESTS = 16


@dataclass(kw_only=True)
class RayConfig:
    """How `gan serve --ray` places the served model on a Ray cluster."""

    replicas: int = 1
    """Ray Serve replicas, each a process with its own copy of the model and its own dynamic
    batcher (ignored with --autoscale)."""
    autoscale: str | None = None
    """MIN:MAX: let Ray Serve's autoscaler run between MIN and MAX replicas, adding one when a
    replica has more than 16 requests in flight on average (instead of --replicas)."""
    ray_address: str | None = None
    """Ray cluster to join (HOST:6379, ray://HOST:10001, or auto for the one `ray start` began
    here); unset: start a local Ray for this command and stop it on exit."""
    replica_cpus: float = 1.0
    """CPUs Ray reserves for each replica; with --intra-op-threads 0 also its ONNX Runtime
    threads (rounded up)."""

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ServeConfigError(f"--replicas must be at least 1, got {self.replicas}")
        if self.replica_cpus <= 0:
            raise ServeConfigError(f"--replica-cpus must be positive, got {self.replica_cpus}")
        self.bounds()  # checks --autoscale

    def bounds(self) -> tuple[int, int]:
        """(fewest, most) replicas: --autoscale MIN:MAX, or --replicas twice."""
        if self.autoscale is None:
            return self.replicas, self.replicas
        low, sep, high = self.autoscale.partition(":")
        try:
            bounds = int(low), int(high)
        except ValueError:
            bounds = (0, 0)
        if not sep or not 0 <= bounds[0] <= bounds[1] or bounds[1] < 1:
            raise ServeConfigError(f"--autoscale {self.autoscale!r}: give MIN:MAX replicas with "
                                   "0 <= MIN <= MAX and MAX >= 1, e.g. 1:4")
        return bounds


def deployment_options(config: ServeConfig, ray: RayConfig) -> dict[str, Any]:
    """Ray Serve deployment options (the keys of a `serve deploy` YAML's deployments entry)."""
    low, high = ray.bounds()
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": ray.replica_cpus},
        # requests handled at once by one replica, like `gan serve`'s --max-concurrent-rpcs
        "max_ongoing_requests": config.max_concurrent_rpcs,
        # Ray drains a stopping replica's requests this long, like --grace-s
        "graceful_shutdown_timeout_s": config.grace_s,
    }
    if ray.autoscale is None:
        options["num_replicas"] = low
    else:
        options["autoscaling_config"] = {
            "min_replicas": low, "max_replicas": high, "initial_replicas": max(low, 1),
            "target_ongoing_requests": TARGET_ONGOING_REQUESTS}
    return options


def replica_cores(ray: RayConfig) -> int:
    """The cores a replica's inference uses: its reserved CPUs rounded up (not every core of
    the node: replicas share it); --inference-workers and --intra-op-threads divide them."""
    return max(1, math.ceil(ray.replica_cpus))
