"""`gan serve --http-port 0 --model-name dcgan` as a real process: it prints its HTTP address,
answers tritonclient over gRPC and HTTP, and drains an in-flight HTTP request on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import export_generator
from tests.serve import triton

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def g32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "models"
    folder.mkdir(exist_ok=True)
    return export_generator(folder, "g32")


def _gan(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gan", *args], cwd=ROOT, text=True,
                            env=os.environ | {"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _metric(url: str, name: str) -> float:
    for row in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if row.startswith(name + " "):
            return float(row.split()[1])
    return 0.0


@triton.skip_without
def test_serve_speaks_v2_and_drains_http_on_sigterm(g32: Path) -> None:
    proc = _gan("serve", str(g32), "--port", "0", "--providers", "cpu", "--http-port", "0",
                "--model-name", "dcgan", "--metrics-port", "0", "--max-queue-delay-ms", "3000",
                "--grace-s", "20")
    try:
        line = proc.stdout.readline()  # serving ID on ADDR (v2 HTTP on URL) (metrics on URL)
        assert line.startswith("serving "), line + proc.stderr.read()
        words = line.split()
        address, http, metrics = words[3], words[7].rstrip(")"), words[-1].rstrip(")")
        assert http.startswith("http://127.0.0.1:") and http.endswith("/")
        for protocol, url in (("grpc", address), ("http", http[len("http://"):-1])):
            live, ready, meta = triton.run(protocol, url, "dcgan", [
                {"op": "live"}, {"op": "model_ready"}, {"op": "metadata"}])
            assert live is True and ready is True and meta["name"] == "dcgan"
        reply: list[Any] = []
        body = json.dumps({"parameters": {"num_images": 3, "seed": 1}}).encode()
        post = threading.Thread(target=lambda: reply.append(urllib.request.urlopen(
            urllib.request.Request(http + "v2/models/dcgan/infer", data=body), timeout=60)
            .read()))
        post.start()
        deadline = time.monotonic() + 30
        while _metric(metrics, "gan_serve_queue_depth_images") < 3:  # waiting for its batch
            assert time.monotonic() < deadline, "the HTTP request never queued"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        post.join(timeout=60)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [out] = json.loads(reply[0])["outputs"]
    assert out["shape"] == [3, 1, 32, 32] and len(out["data"]) == 3 * 32 * 32
    port = int(http.rsplit(":", 1)[1].rstrip("/"))
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the HTTP port is closed after the drain


def test_bad_v2_flags_are_one_line_errors(g32: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [(["--http-port", str(port)], f"cannot serve HTTP on 127.0.0.1:{port}"),
                 (["--model-name", "a/b"], "model_name 'a/b': use letters"),
                 (["--http-port", "70000"], "ports must be between 0 and 65535")]
        for flags, message in cases:
            proc = _gan("serve", str(g32), "--port", "0", "--providers", "cpu", *flags)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode != 0 and message in err, err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
