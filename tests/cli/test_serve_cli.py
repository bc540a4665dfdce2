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
from serve import images, latent
from serve.client import GeneratorClient, request
from serve.server import GeneratorServer
from tests.helpers import FASHION_MNIST_CLASSES, export_generator, reference_latent, running

ROOT = Path(__file__).resolve().parents[2]


def _model(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    folder = tmp_path_factory.getbasetemp() / "models"
    folder.mkdir(exist_ok=True)
    return export_generator(folder, name)


@pytest.fixture(scope="session")
def g32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generator of tests/serve (the same file when both run in one session)."""
    return _model(tmp_path_factory, "g32")


@pytest.fixture(scope="session")
def g32_cond(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny conditional generator of tests/serve (Fashion-MNIST's 10 class names)."""
    return _model(tmp_path_factory, "g32_cond")


@pytest.fixture(scope="module")
def cond_server(g32_cond: Path) -> Iterator[GeneratorServer]:
    with running(g32_cond, max_batch_size=4) as s:  # requests split across batches
        yield s


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


def test_generate_refuses_an_out_that_is_not_png_or_gif(gan_cli, tmp_path) -> None:
    code, _, err = gan_cli("generate", "--model", str(tmp_path / "g.onnx"), "-n", "1",
                           "--out", str(tmp_path / "grid.jpg"))
    assert code == 1 and err.startswith("error: ") and "write a .png" in err and ".gif" in err
    assert not (tmp_path / "grid.jpg").exists()


def _pixels(model: Path, z: np.ndarray, labels: list[int] | None = None) -> list[np.ndarray]:
    """The (H, W, C) uint8 images of latent z [and labels], batch 1, in this process."""
    return list(images.to_uint8(reference_latent(model, z, labels)))


def test_generate_label_by_name_or_index_locally_or_through_a_server(
        gan_cli, g32_cond: Path, cond_server: GeneratorServer, tmp_path: Path) -> None:
    runs = {"local name": ["--model", str(g32_cond), "--label", "sneaker"],
            "local index": ["--model", str(g32_cond), "--label", "7"],
            "server name": ["--server", cond_server.address, "--label", "Sneaker"],
            "server index": ["--server", cond_server.address, "--label", "7"]}
    for name, args in runs.items():
        code, out, err = gan_cli("generate", *args, "-n", "6", "--seed", "3",
                                 "--out", str(tmp_path / f"{name}.png"))
        assert code == 0, err
        assert "seed 3, class Sneaker (7)" in out
    grids = {(tmp_path / f"{name}.png").read_bytes() for name in runs}
    assert len(grids) == 1, "the four ways to ask for Sneakers gave different images"
    want = _pixels(g32_cond, latent.from_seed(3, 6, 100), [7] * 6)
    assert grids == {images.png(images.grid(want))}
    code, _, err = gan_cli("generate", "--model", str(g32_cond), "--label", "Bag", "-n", "6",
                           "--seed", "3", "--out", str(tmp_path / "bag.png"))
    assert code == 0, err
    assert (tmp_path / "bag.png").read_bytes() not in grids


def test_generate_without_label_cycles_the_classes(gan_cli, g32_cond: Path,
                                                   cond_server: GeneratorServer,
                                                   tmp_path: Path) -> None:
    for where in (["--model", str(g32_cond)], ["--server", cond_server.address]):
        code, _, err = gan_cli("generate", *where, "-n", "12", "--seed", "5",
                               "--out-dir", str(tmp_path / where[0]))
        assert code == 0, err
    want = _pixels(g32_cond, latent.from_seed(5, 12, 100), [i % 10 for i in range(12)])
    for where in ("--model", "--server"):
        files = sorted((tmp_path / where).glob("*.png"))
        assert [np.asarray(Image.open(f))[:, :, None].tobytes() for f in files] == [
            w.tobytes() for w in want]


def test_bad_label_is_one_line(gan_cli, g32: Path, g32_cond: Path,
                               cond_server: GeneratorServer, tmp_path: Path) -> None:
    names = ", ".join(FASHION_MNIST_CLASSES)
    with running(g32) as plain:
        cases = [
            (["--model", str(g32_cond), "--label", "Sneakers"],
             f"--label Sneakers: no such class; give an index (0 to 9) or one of: {names}"),
            (["--server", cond_server.address, "--label", "sandals"], "no such class"),
            (["--model", str(g32_cond), "--label", "10"], "out of range, this model has 10"),
            (["--server", cond_server.address, "--label", "-1"], "out of range"),
            (["--model", str(g32), "--label", "Sneaker"],
             "--label Sneaker: this model is unconditional (it has no classes)"),
            (["--server", plain.address, "--label", "0"], "this model is unconditional"),
            (["--model", str(g32_cond), "--interpolate", "1", "2"],
             f"pick the class of the interpolation with --label (one of: {names})"),
        ]
        for args, message in cases:
            code, out, err = gan_cli("generate", *args, "--out", str(tmp_path / "x.png"))
            assert code == 1 and out == ""
            assert err.strip().splitlines() == [err.strip()], err
            assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--interpolate", "1", "2", "--steps", "1"], "--steps must be at least 2"),
    (["--interpolate", "1", "2", "-n", "4"], "-n does not go with --interpolate"),
    (["--interpolate", "1", "2", "--seed", "4"], "--seed does not go with --interpolate"),
    (["--interpolate", "1", "-2"], "seeds must be between 0 and 2^64 - 1"),
])
def test_bad_interpolation_flags_are_one_line(gan_cli, g32: Path, tmp_path: Path,
                                              args: list[str], message: str) -> None:
    code, _, err = gan_cli("generate", "--model", str(g32), *args,
                           "--out", str(tmp_path / "x.gif"))
    assert code == 1 and err.startswith("error: ") and message in err, err


def test_interpolation_strip_and_gif_locally_and_through_a_server(
        gan_cli, g32_cond: Path, cond_server: GeneratorServer, tmp_path: Path) -> None:
    steps = 7
    files = {}
    for where in (["--model", str(g32_cond)], ["--server", cond_server.address]):
        for suffix in ("png", "gif"):
            path = tmp_path / f"{where[0][2:]}.{suffix}"
            code, out, err = gan_cli("generate", *where, "--interpolate", "11", "12",
                                     "--steps", str(steps), "--label", "Bag", "--out", str(path),
                                     "--out-dir", str(tmp_path / f"{where[0][2:]}-{suffix}"))
            assert code == 0, err
            assert f"for {steps} images" in out and "seeds 11 -> 12, 7 frames, class Bag" in out
            files[where[0], suffix] = path.read_bytes()
    assert files["--model", "png"] == files["--server", "png"]
    assert files["--model", "gif"] == files["--server", "gif"]
    want = _pixels(g32_cond, latent.interpolation(11, 12, steps, 100), [8] * steps)
    ends = _pixels(g32_cond, np.concatenate([latent.from_seed(11, 1, 100),
                                             latent.from_seed(12, 1, 100)]), [8, 8])
    assert want[0].tobytes() == ends[0].tobytes() and want[-1].tobytes() == ends[1].tobytes()
    strip = np.asarray(Image.open(tmp_path / "model.png"))
    assert strip.shape == (32 + 4, steps * 34 + 2)  # one row, 2 px padding
    for i, w in enumerate(want):
        np.testing.assert_array_equal(strip[2:34, 2 + 34 * i:34 + 34 * i], w[:, :, 0])
    each = sorted((tmp_path / "server-gif").glob("*.png"))
    assert [np.asarray(Image.open(f)).tobytes() for f in each] == [w.tobytes() for w in want]
    gif = Image.open(tmp_path / "server.gif")
    # Pillow merges a frame equal to the one before it; these 7 frames all differ
    assert len({w.tobytes() for w in want}) == steps and gif.n_frames == steps
    for i, w in enumerate(want):
        gif.seek(i)
        np.testing.assert_array_equal(np.asarray(gif.convert("L")), w[:, :, 0])


def test_interpolation_of_an_unconditional_model(gan_cli, g32: Path, tmp_path: Path) -> None:
    code, out, err = gan_cli("generate", "--model", str(g32), "--interpolate", "3", "4",
                             "--out", str(tmp_path / "s.png"))
    assert code == 0, err
    assert "10 images" in out and "seeds 3 -> 4, 10 frames" in out and "class" not in out
    strip = np.asarray(Image.open(tmp_path / "s.png"))
    assert strip.shape == (36, 10 * 34 + 2)
    ends = _pixels(g32, np.concatenate([latent.from_seed(3, 1, 100),
                                        latent.from_seed(4, 1, 100)]))
    np.testing.assert_array_equal(strip[2:34, 2:34], ends[0][:, :, 0])
    np.testing.assert_array_equal(strip[2:34, 2 + 34 * 9:34 * 10], ends[1][:, :, 0])

