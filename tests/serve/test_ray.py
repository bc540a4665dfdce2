"""gan.v1.Generator on a real local Ray cluster: `gan serve --ray --replicas 2` as a process, two
replicas answering threads, the same images as local generation, bad input, a full replica
queue, a killed replica replaced by Ray, and every Ray process gone after SIGTERM.

One cluster for the module (Ray's start-up is the slow part): the CLI starts it; this process
joins it as a second driver to read Ray's own view (serve.status, the replica actors) and to
deploy a second, deliberately tight application.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

# A new local Ray uses token authentication (its token in ~/.ray/auth_token); a driver joining
# it by address must say so before Ray is imported (Ray reads the mode once).
os.environ.setdefault("RAY_AUTH_MODE", "token")
pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install "
                    "'dcgan-forge[ray]' (or 'ray[serve]')")

import ray  # noqa: E402
from ray import serve as ray_serve  # noqa: E402

from gan.cli import app as gan_app  # noqa: E402
from serve.client import GeneratorClient, request  # noqa: E402
from serve.config import ServeConfig  # noqa: E402
from serve.generation import Local  # noqa: E402
from serve.ray_app import PID_KEY, REPLICA_KEY, bind  # noqa: E402
from serve.ray_config import APP_NAME, RayConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120  # bound of every wait on Ray (replica start-up is slow on a loaded machine)


class RayServeProcess:
    """`gan serve MODEL --ray ...` with a unique tag in its environment: every process Ray
    starts for it inherits the tag, so the test can tell whether any is left."""

    def __init__(self, model: Path, log: Path, *flags: str) -> None:
        self.tag = f"gan-ray-test-{uuid.uuid4().hex}"
        env = os.environ | {"PYTHONPATH": str(ROOT), "GAN_RAY_TEST_TAG": self.tag}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gan", "serve", str(model), "--ray", "--port", "0",
             "--providers", "cpu", *flags],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
        line = self.proc.stdout.readline()
        found = re.fullmatch(r"serving sha256:\w+ on (\S+) \(Ray at (\S+), dashboard (\S+)\)\n",
                             line)
        assert found, line + log.read_text()[-3000:]
        self.address, self.ray_address, self.dashboard = found.groups()

    def tagged(self) -> list[int]:
        """Processes still alive that carry this run's tag (Ray's GCS, raylet, workers)."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0]
            except OSError:
                continue
            if self.tag.encode() in environ and state != "Z":
                found.append(int(pid))
        return found


@pytest.fixture(scope="module")
def cluster(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RayServeProcess]:
    log = tmp_path_factory.mktemp("ray") / "gan-serve.log"
    p = RayServeProcess(models["g32"], log, "--replicas", "2", "--replica-cpus", "0.5",
                        "--max-batch-size", "8", "--grace-s", "5")
    try:
        ray.init(address=p.ray_address, namespace="serve", log_to_driver=False)
        yield p
    finally:
        ray.shutdown()  # this driver leaves first; the CLI then stops its Ray
        p.proc.send_signal(signal.SIGTERM)
        try:
            code = p.proc.wait(timeout=WAIT_S)
        finally:
            if p.proc.poll() is None:
                p.proc.kill()
            left = _wait_until_gone(p)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
        assert code == 0, log.read_text()[-3000:]
        assert not left, f"Ray processes left after SIGTERM: {left}"


def _wait_until_gone(p: RayServeProcess) -> list[int]:
    deadline = time.monotonic() + 30
    while (left := p.tagged()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"Ray never reported {what}: {ray_serve.status()}"
        time.sleep(0.5)


def _healthy(replicas: int, app: str = APP_NAME) -> bool:
    status = ray_serve.status().applications.get(app)
    if status is None or status.status != "RUNNING":
        return False
    deployment = status.deployments["Generator"]
    return deployment.status == "HEALTHY" and deployment.replica_states == {"RUNNING": replicas}


def _replica_actors() -> set[str]:
    """Names of the live replica actors of the application (Ray's own list)."""
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#")}


def _generate_from_threads(address: str, seeds: list[int], n: int = 3
                           ) -> tuple[dict[int, list[np.ndarray]], dict[int, tuple[str, int]]]:
    """Generate(n, seed) for each seed from 16 threads -> images by seed and, by seed, the
    (replica id, pid) that answered (from the trailing metadata)."""
    got: dict[int, list[np.ndarray]] = {}
    by: dict[int, tuple[str, int]] = {}
    errors: list[BaseException] = []
    threads = 16

    def work(mine: list[int]) -> None:
        try:
            with GeneratorClient(address, timeout_s=60) as client:
                for seed in mine:
                    response, call = client.stub.Generate.with_call(
                        request(n, seed=seed, format="raw_uint8"), timeout=60)
                    meta = dict(call.trailing_metadata())
                    by[seed] = (meta[REPLICA_KEY], int(meta[PID_KEY]))
                    got[seed] = [np.frombuffer(i.data, np.uint8).reshape(32, 32, 1)
                                 for i in response.images]
        except BaseException as e:  # surfaced below
            errors.append(e)

    pool = [threading.Thread(target=work, args=(seeds[t::threads],)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=WAIT_S)
    assert not errors, errors[:3]
    assert got.keys() == set(seeds)
    return got, by


def test_two_replicas_answer_threads_with_the_local_images(cluster: RayServeProcess,
                                                           models: dict[str, Path]) -> None:
    assert _healthy(2), ray_serve.status()
    seeds = list(range(100, 164))
    got, by = _generate_from_threads(cluster.address, seeds)
    local = Local(str(models["g32"]), "cpu")
    for seed in seeds:
        for a, b in zip(got[seed], local.images(3, seed=seed), strict=True):
            np.testing.assert_array_equal(a, b)
    replicas = {replica for replica, _pid in by.values()}
    assert len(replicas) == 2, f"answered by {replicas}: both replicas should share the load"
    assert {f"SERVE_REPLICA::{APP_NAME}#Generator#{r}" for r in replicas} == _replica_actors()
    status = subprocess.run([str(Path(sys.executable).parent / "serve"), "status", "-a",
                             cluster.dashboard], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    shown = yaml.safe_load(status.stdout)["applications"][APP_NAME]
    assert shown["status"] == "RUNNING"
    assert shown["deployments"]["Generator"]["replica_states"] == {"RUNNING": 2}


def test_a_starting_proxy_gets_a_minute_in_the_local_ray(cluster: RayServeProcess) -> None:
    """Ray Serve kills a proxy not ready within 5 s, and serve.start then fails on a loaded
    machine: the processes of the Ray this command started (its controller above all) carry the
    longer bound."""
    setting = b"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S=60\0"
    environs = {}
    for pid in cluster.tagged():
        if pid != cluster.proc.pid:  # the CLI's /proc environ is the one it was started with
            with contextlib.suppress(OSError):  # a worker that ended meanwhile
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                # empty: a process exiting right now (its memory is gone). Ray's agents
                # (ray::DashboardAgent seen) start with an environment of their own, and
                # Serve's controller, not they, times the proxy's start.
                if environ and b"Agent" not in cmd:
                    environs[(pid, cmd)] = environ
    assert len(environs) >= 3, "expected Ray's GCS, raylet and workers"
    assert any(b"ServeController" in cmd for _, cmd in environs), list(environs)
    assert [key for key, e in environs.items() if setting not in e] == []


def test_gan_generate_through_ray_writes_the_same_files_as_locally(
        cluster: RayServeProcess, models: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    for where, flag in (("ray", ["--server", cluster.address]),
                        ("local", ["--model", str(models["g32"])])):
        result = runner.invoke(gan_app, ["generate", *flag, "--seed", "7", "-n", "6",
                                         "--out-dir", str(tmp_path / where)])
        assert result.exit_code == 0, result.output
    for i in range(6):  # byte-identical PNG files
        name = f"{i:06d}.png"
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    with GeneratorClient(cluster.address) as client:  # streamed parts, raw floats
        parts = list(client.generate_stream(6, seed=7, format="raw_uint8"))
        info = client.model_info()
    streamed = [im for part in parts for im in part.images]
    local = Local(str(models["g32"]), "cpu").images(6, seed=7)
    np.testing.assert_array_equal(np.stack(streamed), np.stack(local))
    assert info.max_batch_size == 8 and info.provider == "cpu"


def test_bad_input_is_invalid_argument(cluster: RayServeProcess) -> None:
    with GeneratorClient(cluster.address) as client:
        for bad in (request(0, seed=1), request(2, latent=[0.5] * 7),
                    request(2, seed=1, labels=[3])):  # labels for an unconditional model
            with pytest.raises(grpc.RpcError) as e:
                client.stub.Generate(bad, timeout=30)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            list(client.stub.GenerateStream(request(0, seed=1), timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(client.generate(2, seed=1).images) == 2  # and it keeps serving


def test_full_replica_queue_is_resource_exhausted(cluster: RayServeProcess,
                                                  models: dict[str, Path]) -> None:
    """A second application, one replica with a 16-image queue whose batches wait 5 s to fill:
    of two 10-image requests sent together, one is queued and the other refused at once."""
    tight = ServeConfig(model=str(models["g32"]), providers="cpu", max_batch_size=64,
                        max_queue_size=16, max_images_per_request=16, max_queue_delay_ms=5000)
    ray_serve.run(bind(tight, RayConfig(replicas=1, replica_cpus=0.25)), name="tight",
                  route_prefix="/tight", blocking=False)
    try:
        with GeneratorClient(cluster.address) as client:
            meta = (("application", "tight"),)
            calls = [client.stub.Generate.future(request(10, seed=s), timeout=60, metadata=meta)
                     for s in (1, 2)]
            codes = sorted((c.exception().code() if c.exception() else grpc.StatusCode.OK).name
                           for c in calls)
        assert codes == ["OK", "RESOURCE_EXHAUSTED"]
        refused = next(c for c in calls if c.exception())
        assert "queue full" in refused.exception().details()
    finally:
        ray_serve.delete("tight")


def test_killed_replica_is_replaced_and_later_requests_succeed(cluster: RayServeProcess,
                                                               models: dict[str, Path]) -> None:
    _, by = _generate_from_threads(cluster.address, list(range(200, 232)))
    victim, pid = next(iter(by.values()))
    before = _replica_actors()
    os.kill(pid, signal.SIGKILL)
    victim_actor = f"SERVE_REPLICA::{APP_NAME}#Generator#{victim}"
    _until(lambda: victim_actor not in _replica_actors() and len(_replica_actors()) == 2
           and _healthy(2), "a replacement replica")
    after = _replica_actors()
    assert len(after - before) == 1
    seeds = list(range(300, 364))  # sent after Ray reports the deployment healthy again
    got, by = _generate_from_threads(cluster.address, seeds)
    assert victim not in {replica for replica, _pid in by.values()}
    local = Local(str(models["g32"]), "cpu")
    for seed in seeds[:8]:
        np.testing.assert_array_equal(np.stack(got[seed]), np.stack(local.images(3, seed=seed)))


def test_ray_flags_errors_are_one_line_and_start_no_ray(tmp_path: Path,
                                                        models: dict[str, Path]) -> None:
    runner = CliRunner()
    cases = [
        (["serve", str(tmp_path / "missing.onnx"), "--ray"], "does not exist"),
        (["serve", str(models["g32"]), "--replicas", "2"], "go with --ray"),
        (["serve", str(models["g32"]), "--ray", "--autoscale", "3:1"], "MIN:MAX"),
        (["serve", str(models["g32"]), "--ray", "--replicas", "0"], "at least 1"),
        (["serve", str(models["g32"]), "--ray", "--metrics-port", "0"], "ray_serve_"),
    ]
    for args, words in cases:
        result = runner.invoke(gan_app, args)
        assert result.exit_code != 0 and words in str(result.exception), (args, result)
