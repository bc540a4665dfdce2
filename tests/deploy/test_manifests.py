"""deploy/: the Kubernetes manifests against Kubernetes' own schemas (offline, strict), the KServe
and KubeRay resources' structure, and every `gan serve` command line in them parsed by the real
CLI, so a renamed flag or a port that disagrees with its probe fails here, not in a cluster."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from gan.cli import COMMAND_MODULES, app
from serve.config import ServeConfig

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OLDEST_KUBERNETES = "1.30"  # native gRPC probes (1.24) and the preStop sleep action (1.30)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind(folder: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for p in sorted((DEPLOY / folder).glob("*.yaml")) for d in _docs(p)}


def _serve_command() -> Any:
    return typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]


def _serve_flags(args: list[str]) -> dict[str, Any]:
    """`gan serve ARGS` parsed by the real command (unknown flags and bad values raise)."""
    return _serve_command().make_context("serve", list(args)).params


def _validate(resource: dict[str, Any]) -> None:
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        kubernetes_validate.validate(resource, version, strict=True)


def _as_pod(container: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
            "spec": {"containers": [container]}}


def test_kubernetes_manifests_pass_the_strict_schemas() -> None:
    resources = [d for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _docs(p)]
    assert {r["kind"] for r in resources} >= {"Deployment", "Service",
                                              "HorizontalPodAutoscaler"}
    for resource in resources:
        _validate(resource)
    broken = copy.deepcopy(_by_kind("k8s")["Deployment"])  # the check itself can fail
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


def test_deployment_agrees_with_gan_serve_and_its_service() -> None:
    k8s = _by_kind("k8s")
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = _serve_flags(container["args"])
    assert flags["host"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == flags["port"] and ports["metrics"] == flags["metrics_port"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == flags["port"], probe
    assert container["readinessProbe"]["grpc"]["service"] == "gan.v1.Generator"
    # SIGTERM comes after preStop; the drain then needs --grace-s within the pod's grace period
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + flags["grace_s"]
    cpus = int(container["resources"]["limits"]["cpu"])
    threads = flags["inference_workers"] * flags["intra_op_threads"]  # inference at full load
    assert 1 <= threads <= cpus and 1 <= flags["encode_threads"] <= cpus
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    assert Path(flags["model"]).parent.as_posix() in {m["mountPath"]
                                                      for m in container["volumeMounts"]}
    service, hpa = k8s["Service"], k8s["HorizontalPodAutoscaler"]
    assert service["spec"]["selector"] == k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert hpa["spec"]["scaleTargetRef"]["name"] == k8s["Deployment"]["metadata"]["name"]


def test_kserve_runtime_and_inference_service() -> None:
    kserve = _by_kind("kserve")
    runtime, isvc = kserve["ServingRuntime"], kserve["InferenceService"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe merges the predictor into
    assert container["command"] == ["gan", "serve"]
    flags = _serve_flags([a.replace("{{.Name}}", "fashion-gan") for a in container["args"]])
    assert flags["model"].as_posix().startswith("/mnt/models/")  # the storage initializer's
    assert (flags["host"], flags["http_port"], flags["port"]) == ("0.0.0.0", 8080, 8081)
    assert flags["model_name"] == "fashion-gan"
    assert {p["containerPort"] for p in container["ports"]} <= {flags["http_port"],
                                                                 flags["port"]}
    _validate(_as_pod(container))
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"]
                                            for f in runtime["spec"]["supportedModelFormats"]}
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] > flags["grace_s"]


def test_dockerfile_installs_serve_only_runs_as_a_user_and_serves_on_all_addresses() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG EXTRAS=serve\n" in text and 'pip install ".[${EXTRAS}]"' in text
    assert re.search(r"^USER [1-9]\d*$", text, re.M), "the image must not run as root"
    entry = yaml.safe_load(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    cmd = yaml.safe_load(re.search(r"^CMD (.+)$", text, re.M).group(1))
    assert entry == ["gan", "serve"]
    assert _serve_flags(cmd)["host"] == "0.0.0.0"
    copied = {Path(m).parts[0] for m in re.findall(r"^COPY (\S+) ", text, re.M)}
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such path"
    # the root CLI imports each package's cli module: all of them must be in the image
    assert {m.split(".")[0] for m in COMMAND_MODULES} <= copied
    serve_extra = _pyproject()["project"]["optional-dependencies"]["serve"]
    assert not [d for d in serve_extra if d.startswith(("torch", "onnx>", "onnx="))]


def test_ray_serve_config_and_rayservice() -> None:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install "
                        "'dcgan-forge[ray]'")
    from ray.serve.schema import DeploymentSchema, ServeDeploySchema

    from serve.ray_app import ADD_SERVICER
    from serve.ray_config import APP_NAME, DEPLOYMENT_NAME, RayConfig, deployment_options

    config = yaml.safe_load((DEPLOY / "ray" / "serve.yaml").read_text())
    ServeDeploySchema.model_validate(config)  # Ray's own schema of `serve deploy` files
    assert config["grpc_options"]["grpc_servicer_functions"] == [ADD_SERVICER]
    (application,) = config["applications"]
    assert application["name"] == APP_NAME and application["route_prefix"]
    assert application["import_path"] == "serve.ray_app:app"
    assert {d["name"] for d in application["deployments"]} == {DEPLOYMENT_NAME}
    ServeConfig(**application["args"])  # the args are ServeConfig fields with valid values
    (rayservice,) = _docs(DEPLOY / "ray" / "rayservice.yaml")
    assert rayservice["apiVersion"] == "ray.io/v1" and rayservice["kind"] == "RayService"
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == config
    cluster = rayservice["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            _validate(_as_pod(container))
    for ray in (RayConfig(replicas=3), RayConfig(autoscale="0:4", replica_cpus=0.5)):
        DeploymentSchema(name=DEPLOYMENT_NAME, **deployment_options(ServeConfig(), ray))


def test_ray_builder_takes_command_line_and_yaml_arguments(tmp_path: Path) -> None:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed")
    from serve.config import ServeConfigError
    from serve.ray_app import app as build

    built = build({"model": "g.onnx", "replicas": "2", "max_batch_size": "8", "fp16": "false",
                   "replica_cpus": 0.5, "trt_cache_dir": "/cache"})
    assert built is not None
    for bad, words in (({"model": "g.onnx", "colour": "red"}, "unknown argument"),
                       ({"model": "g.onnx", "max_batch_size": "many"}, "not a valid int"),
                       ({"replicas": "2"}, "give the model"),
                       ({"model": "g.onnx", "autoscale": "4:2"}, "MIN:MAX")):
        with pytest.raises(ServeConfigError, match=words):
            build(bad)


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())
