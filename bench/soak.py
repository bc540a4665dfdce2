"""A soak you can run: minutes of mixed traffic against a real `gan serve` subprocess on
127.0.0.1, with a SIGTERM and a restart on the same port in the middle, printed as one JSON
document.

Traffic (--threads callers, each picking at random, seeded):
  small      Generate of 1-4 images          large   Generate of 64 images
  stream     GenerateStream of 64 images     bad     invalid fields or undecodable bytes
  cancelled  a Generate or a stream cancelled mid-way
  deadline   a Generate with a 1 ms deadline
and one `stalled` caller that reads one message of a stream and then stops reading (the server
cuts it off after --stream-stall-s).

Every image of a good answer is compared with the answer the idle server gave to the same
request alone at the start (`solo`): `images.mixed` counts those that differ (must be 0). The
server's RSS is sampled every few seconds; the server must exit 0 after each SIGTERM.

    python bench/soak.py                    # 150 s, 8 callers, a tiny default model
    python bench/soak.py --seconds 30       # shorter
    python bench/soak.py --model g.onnx     # your own exported generator

Needs torch and export only to make the default model (skipped with --model).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from serve._proto.gan.v1 import generator_pb2 as pb  # noqa: E402
from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc  # noqa: E402
from serve.images import TO_PB  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))  # as a script or as python -m bench.soak
from machine import cpu_name  # noqa: E402  # torch-free: it imports torch only in machine()

SEEDS = range(8)
SIZES = {"small": (1, 4), "large": (64,), "stream": (64,)}
FORMATS = ("png", "raw_uint8")
KINDS = ("small", "large", "stream", "bad", "cancelled", "deadline")
# what each kind may end in; UNAVAILABLE only while the server restarts, RESOURCE_EXHAUSTED
# under overload. Anything else (INTERNAL, UNKNOWN, a bad request accepted...) is `unexpected`.
EXPECTED = {"small": {"OK", "RESOURCE_EXHAUSTED"}, "bad": {"INVALID_ARGUMENT"},
            "cancelled": {"CANCELLED", "OK"}, "deadline": {"DEADLINE_EXCEEDED"},
            "stalled": {"CANCELLED"}}
EXPECTED["large"] = EXPECTED["stream"] = EXPECTED["small"]
STALL_S = 3.0


def default_model(folder: Path) -> Path:
    """The default run's 32 px generator at ngf 16, untrained: the serve-load bench's quick one."""
    from serve_load import default_models  # bench/ is on sys.path when this runs as a script

    return default_models(folder, quick=True)[0]


class Server:
    """`gan serve` as a subprocess: start (same port after the first), SIGTERM, RSS."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []
        self.starts = 0
        self.down_s: list[float] = []  # SIGTERM to serving again, per restart

    def start(self) -> str:
        env = os.environ | {"PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gan", "serve", str(self.model), "--host", "127.0.0.1",
             "--port", str(self.port), "--providers", "cpu", "--max-batch-size", "32",
             "--max-images-per-request", "64", "--max-concurrent-rpcs", "32",
             "--stream-stall-s", str(STALL_S), "--grace-s", "10", "--drain-s", "1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("serving "):
            self.proc.kill()
            self.log.seek(0)
            raise SystemExit(f"gan serve did not start: {line or self.log.read()[-500:]!r}")
        address = line.split()[3]
        self.port = int(address.rsplit(":", 1)[1])
        self.starts += 1
        return address

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.exit_codes.append(self.proc.wait(timeout=60))

    def rss_mb(self) -> float | None:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()  # type: ignore[union-attr]
        except OSError:
            return None
        kb = next(int(row.split()[1]) for row in text.splitlines() if row.startswith("VmRSS"))
        return round(kb / 1024, 1)


def _request(n: int, seed: int, fmt: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(num_images=n, seed=seed, format=TO_PB[fmt])


def solo_answers(stub: pb_grpc.GeneratorStub) -> dict[tuple[int, int, str], list[bytes]]:
    """Every (n, seed, format) the traffic asks for, asked once alone of the idle server."""
    out = {}
    for n in sorted({n for sizes in SIZES.values() for n in sizes}):
        for seed in SEEDS:
            for fmt in FORMATS:
                out[n, seed, fmt] = [im.data for im in stub.Generate(
                    _request(n, seed, fmt), timeout=60).images]
    return out


class Traffic:
    """The callers and what they saw."""

    def __init__(self, address: str, solo: dict, stop_at: float, max_requests: int) -> None:
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500),
            ("grpc.max_receive_message_length", 64 << 20)])
        self.stub = pb_grpc.GeneratorStub(self.channel)
        self.address = address
        self.solo = solo
        self.stop_at = stop_at
        self.left = max_requests
        self.lock = threading.Lock()
        self.codes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.verified = self.mixed = 0

    def _more(self) -> bool:
        with self.lock:
            self.left -= 1
            return self.left >= 0 and time.monotonic() < self.stop_at

    def _count(self, kind: str, code: grpc.StatusCode, got: list[bytes] | None = None,
               want: list[bytes] | None = None) -> None:
        with self.lock:
            self.codes[kind][code.name] += 1
            if got is not None and want is not None:
                same = sum(a == b for a, b in zip(got, want, strict=False))
                self.verified += same
                self.mixed += len(want) - same

    def caller(self, seed: int) -> None:
        rng = random.Random(seed)
        while self._more():
            kind = rng.choice(KINDS)
            try:
                getattr(self, kind)(rng)
            except grpc.RpcError as e:
                self._count(kind, e.code())
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    time.sleep(0.1)  # the server is restarting: back off as clients do

    def _good(self, kind: str, rng: random.Random) -> tuple[int, int, str]:
        return rng.choice(SIZES[kind]), rng.choice(SEEDS), rng.choice(FORMATS)

    def small(self, rng: random.Random, kind: str = "small") -> None:
        n, seed, fmt = self._good(kind, rng)
        reply = self.stub.Generate(_request(n, seed, fmt), timeout=60)
        self._count(kind, grpc.StatusCode.OK, [im.data for im in reply.images],
                    self.solo[n, seed, fmt])

    def large(self, rng: random.Random) -> None:
        self.small(rng, "large")

    def stream(self, rng: random.Random) -> None:
        n, seed, fmt = self._good("stream", rng)
        got = [im.data for part in self.stub.GenerateStream(_request(n, seed, fmt), timeout=60)
               for im in part.images]
        self._count("stream", grpc.StatusCode.OK, got, self.solo[n, seed, fmt])

    def bad(self, rng: random.Random) -> None:
        choice = rng.randrange(3)
        if choice == 0:
            self.stub.Generate(pb.GenerateRequest(num_images=0, seed=1), timeout=30)
        elif choice == 1:
            self.stub.Generate(pb.GenerateRequest(num_images=1, latent=[float("nan")] * 100),
                               timeout=30)
        else:
            self.channel.unary_unary("/gan.v1.Generator/Generate")(b"\xff" * 16, timeout=30)
        self._count("bad", grpc.StatusCode.OK)  # accepted: must never happen

    def cancelled(self, rng: random.Random) -> None:
        if rng.random() < 0.5:
            call = self.stub.Generate.future(_request(64, 1, "png"), timeout=60)
            time.sleep(rng.random() * 0.01)
            call.cancel()
            try:
                call.result()  # it may have finished before the cancel: then it counts as OK
                self._count("cancelled", grpc.StatusCode.OK)
            except grpc.FutureCancelledError:
                self._count("cancelled", grpc.StatusCode.CANCELLED)
            return
        stream = self.stub.GenerateStream(_request(64, 2, "raw_uint8"), timeout=60)
        next(stream)
        stream.cancel()
        self._count("cancelled", grpc.StatusCode.CANCELLED)

    def deadline(self, rng: random.Random) -> None:
        self.stub.Generate(_request(64, rng.choice(SEEDS), "png"), timeout=0.001)
        self._count("deadline", grpc.StatusCode.OK)

    def stalled(self) -> None:
        """One stream at a time that stops reading; its channel has no BDP probing, so the
        server's send blocks and the cut-off is what ends it."""
        while time.monotonic() < self.stop_at - 2 * STALL_S:
            with grpc.insecure_channel(self.address, options=[("grpc.http2.bdp_probe", 0)]) as ch:
                stream = pb_grpc.GeneratorStub(ch).GenerateStream(
                    _request(64, 3, "raw_float32"), timeout=60)  # 128 KiB messages
                try:
                    next(stream)
                    time.sleep(2 * STALL_S)  # not reading
                    for _ in stream:
                        pass
                    self._count("stalled", grpc.StatusCode.OK)
                except grpc.RpcError as e:
                    self._count("stalled", e.code())
                    if e.code() == grpc.StatusCode.UNAVAILABLE:
                        time.sleep(0.5)  # the server is restarting


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an exported generator (default: a tiny one)")
    ap.add_argument("--seconds", type=float, default=150.0, help="traffic time, about")
    ap.add_argument("--threads", type=int, default=8, help="concurrent callers")
    ap.add_argument("--max-requests", type=int, default=200_000, help="stop after this many")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        print(json.dumps(soak(model, args.seconds, args.threads, args.max_requests), indent=1))


def soak(model: Path, seconds: float, threads: int, max_requests: int) -> dict[str, Any]:
    server = Server(model)
    address = server.start()
    with grpc.insecure_channel(address) as ch:
        solo = solo_answers(pb_grpc.GeneratorStub(ch))
    began = time.monotonic()
    traffic = Traffic(address, solo, began + seconds, max_requests)
    callers = [threading.Thread(target=traffic.caller, args=(k,)) for k in range(threads)]
    callers.append(threading.Thread(target=traffic.stalled))
    for c in callers:
        c.start()
    rss: list[tuple[float, float | None]] = []
    restarted = False
    while any(c.is_alive() for c in callers):
        rss.append((round(time.monotonic() - began, 1), server.rss_mb()))
        if not restarted and time.monotonic() - began > seconds / 2:
            signalled = time.monotonic()
            server.terminate()  # while the callers keep calling
            server.start()
            server.down_s.append(round(time.monotonic() - signalled, 1))
            restarted = True
        time.sleep(5)
    for c in callers:
        c.join()
    traffic.channel.close()
    server.terminate()
    totals: collections.Counter = collections.Counter()
    for counts in traffic.codes.values():
        totals.update(counts)
    return {
        "command": "python bench/soak.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "load_average_at_end": [round(x, 1) for x in os.getloadavg()]},
        "seconds": round(time.monotonic() - began, 1), "callers": threads,
        "requests": {k: dict(v) for k, v in sorted(traffic.codes.items())},
        "totals": dict(totals),
        "unexpected": {k: {c: n for c, n in v.items() if c not in EXPECTED[k] | {"UNAVAILABLE"}}
                       for k, v in sorted(traffic.codes.items())},
        "images": {"verified": traffic.verified, "mixed": traffic.mixed},
        "server": {"starts": server.starts, "restarts": server.starts - 1,
                   "exit_codes": server.exit_codes, "down_s": server.down_s,
                   "rss_mb": rss},
    }


if __name__ == "__main__":
    main()
