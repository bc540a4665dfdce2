"""`gan serve` as a real process (start-up line, SIGTERM drain, exit 0) and `gan generate`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gan.cli import app
from serve import images
from serve.client import GeneratorClient, request
from tests.serve.support import export_generator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def g32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generator of tests/serve (the same file when both run in one session)."""
    folder = tmp_path_factory.getbasetemp() / "models"
    folder.mkdir(exist_ok=True)
    return export_generator(folder, "g32")


class ServeProcess:
    def __init__(self, model: Path, *flags: str) -> None:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gan", "serve", str(model), "--port", "0", "--providers",
             "cpu", "--metrics-port", "0", *flags],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "serving sha256:... on HOST:PORT (metrics on URL)"
        assert line.startswith("serving "), line + self.proc.stderr.read()
        words = line.split()
        self.address = words[3]
        self.metrics_url = words[-1].rstrip(")")

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        for row in text.splitlines():
            if row.startswith(name + " "):
                return float(row.split()[1])
        return 0.0


@pytest.fixture
def serve_proc(g32: Path) -> Iterator[ServeProcess]:
    p = ServeProcess(g32, "--max-queue-delay-ms", "3000", "--max-batch-size", "64",
                     "--grace-s", "20")
    yield p
    if p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait()


def test_sigterm_finishes_in_flight_work_then_exits_0(serve_proc: ServeProcess) -> None:
    with GeneratorClient(serve_proc.address) as client:
        calls = [client.stub.Generate.future(request(3, seed=i), timeout=30) for i in range(4)]
        deadline = time.monotonic() + 15
        while serve_proc.metric("gan_serve_queue_depth_images") < 12:
            assert time.monotonic() < deadline, "requests never queued"
            time.sleep(0.05)
        serve_proc.proc.send_signal(signal.SIGTERM)
        results = [c.result(timeout=30) for c in calls]
    assert [len(r.images) for r in results] == [3, 3, 3, 3]
    assert serve_proc.proc.wait(timeout=30) == 0
    err = serve_proc.proc.stderr.read()
    assert "received SIGTERM" in err and "stopped" in err


def test_generate_through_server_equals_local_model(g32: Path, tmp_path: Path) -> None:
    serve_proc = ServeProcess(g32, "--max-batch-size", "4")  # 10 images: 3 batches
    try:
        _compare_server_and_local(serve_proc, g32, tmp_path)
    finally:
        serve_proc.proc.terminate()
        assert serve_proc.proc.wait(timeout=30) == 0


def _compare_server_and_local(serve_proc: ServeProcess, g32: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    remote = runner.invoke(app, ["generate", "--server", serve_proc.address, "-n", "10",
                                 "--seed", "1", "--out", str(tmp_path / "remote.png"),
                                 "--out-dir", str(tmp_path / "each")])
    assert remote.exit_code == 0, remote.output
    assert "seed 1" in remote.output
    local = runner.invoke(app, ["generate", "--model", str(g32), "-n", "10", "--seed", "1",
                                "--out", str(tmp_path / "local.png")])
    assert local.exit_code == 0, local.output
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    grid = np.asarray(Image.open(tmp_path / "remote.png"))
    assert grid.shape == (3 * 34 + 2, 4 * 34 + 2)  # 4 per row, 3 rows, 2 px padding
    files = sorted((tmp_path / "each").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(10)]
    with GeneratorClient(serve_proc.address) as client:
        want = client.generate(10, seed=1, format="raw_uint8").images
    for f, w in zip(files, want, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(f)), w[:, :, 0])
    np.testing.assert_array_equal(grid[2:34, 2:34], want[0][:, :, 0])
    assert images.grid(want).shape[:2] == grid.shape


def test_generate_errors_are_one_line(tmp_path: Path, g32: Path) -> None:
    cases = [
        (["generate", "-n", "2", "--out", "x.png"], "exactly one of --server"),
        (["generate", "--model", str(g32), "-n", "2"], "--out GRID.png"),
        (["generate", "--server", "127.0.0.1:1", "-n", "2", "--out", "x.png", "--timeout-s",
          "3"], "cannot reach a server at 127.0.0.1:1"),
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for args, message in cases:
        proc = subprocess.run([sys.executable, "-m", "gan", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert proc.stderr.startswith("error: ") and message in proc.stderr


def test_cli_help_does_not_load_grpc_or_onnxruntime() -> None:
    code = ("import sys, gan.cli; "
            "print(sorted(m for m in ('grpc', 'onnxruntime', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]", out.stderr
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--grace-s" in result.output


def test_generate_refuses_a_grid_name_that_is_not_png(gan_cli, tmp_path) -> None:
    code, _, err = gan_cli("generate", "--model", str(tmp_path / "g.onnx"), "-n", "1",
                           "--out", str(tmp_path / "grid.jpg"))
    assert code == 1 and err.startswith("error: ") and "must end in .png" in err
    assert not (tmp_path / "grid.jpg").exists()
