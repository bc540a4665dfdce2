"""Faults a hostile or unlucky world brings (issue 9): each test reproduces one, against a real
server on 127.0.0.1.

Bounds below (join timeouts, waiting loops) are generous upper limits for a loaded machine, far
from the behaviour they separate (e.g. a 120 s grace period vs a watch that must not hold it)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan.errors import UserError
from serve._proto.gan.v1 import generator_pb2 as pb
from serve.client import GeneratorClient, request
from serve.config import ServeConfig
from serve.server import GeneratorServer
from tests.helpers import NZ, running, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING



def _check(address: str) -> int | grpc.StatusCode:
    """A health Check on a fresh channel: the status, or the RPC's error code."""
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10).status
        except grpc.RpcError as e:
            return e.code()


def test_an_open_health_watch_does_not_hold_the_drain(models: dict[str, Path]) -> None:
    """Fault 1: a Watch is an RPC that never ends by itself; before, stop() waited the whole
    grace period for it. Now the watcher sees NOT_SERVING and then its stream ends (OK)."""
    with running(models["g32"]) as s, GeneratorClient(s.address) as client:
        watch = health_pb2_grpc.HealthStub(client.channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=300)
        assert next(watch).status == SERVING
        stopper = threading.Thread(target=s.stop, kwargs={"grace_s": 120.0})
        stopper.start()
        seen = [reply.status for reply in watch]  # ends without an error
        stopper.join(timeout=60)
        assert not stopper.is_alive(), "an idle health watch held the drain"
        assert seen == [NOT_SERVING]


def test_new_health_checks_see_not_serving_for_the_drain_moment(
        models: dict[str, Path]) -> None:
    """Fault 9: during --drain-s the server answers new Check calls NOT_SERVING and still serves
    requests (load balancers move away); only then does it refuse connections."""
    with running(models["g32"], drain_s=300.0) as s, GeneratorClient(s.address) as client:
        watch = health_pb2_grpc.HealthStub(client.channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=300)
        assert next(watch).status == SERVING
        stopper = threading.Thread(target=s.stop, kwargs={"grace_s": 5.0})
        stopper.start()
        assert next(watch).status == NOT_SERVING
        assert _check(s.address) == NOT_SERVING  # a new caller, on a new connection
        assert len(client.generate(2, seed=1).images) == 2  # work is still served meanwhile
        s.end_drain()  # what a second SIGTERM does
        assert list(watch) == []
        stopper.join(timeout=60)
        assert not stopper.is_alive()
        assert _check(s.address) == grpc.StatusCode.UNAVAILABLE


def test_receiving_is_capped_at_what_a_valid_request_needs(models: dict[str, Path]) -> None:
    """Fault 2: the largest valid request still works; a 2 MB one (the limit was 64 MiB) is
    refused by gRPC before it is parsed."""
    with running(models["g32"], max_images_per_request=64) as s, \
            GeneratorClient(s.address) as client:
        z = [0.5] * (64 * NZ)
        largest = request(64, latent=z, format="raw_uint8")
        assert len(client.stub.Generate(largest, timeout=60).images) == 64
        huge = pb.GenerateRequest(num_images=1, latent=[0.0] * (512 * 1024))
        for call in (client.stub.Generate,
                     lambda r, timeout: list(client.stub.GenerateStream(r, timeout=timeout))):
            with pytest.raises(grpc.RpcError) as e:
                call(huge, timeout=30)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
        assert len(client.generate(1, seed=1).images) == 1


def _stalled_stream(address: str) -> tuple[grpc.Channel, object]:
    """A GenerateStream whose client reads its first message, then stops reading. BDP probing
    off: the flow-control window stays small, so the server's next send blocks."""
    channel = grpc.insecure_channel(address, options=[
        ("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 64 << 20)])
    from serve._proto.gan.v1 import generator_pb2_grpc as pb_grpc

    stream = pb_grpc.GeneratorStub(channel).GenerateStream(
        request(256, seed=1, format="raw_float32"), timeout=300)
    return channel, stream


def test_stalled_stream_readers_are_cut_off_and_never_lock_out_other_callers(
        models: dict[str, Path]) -> None:
    """Fault 3: 4 clients that stop reading a stream, against 4 RPC threads, locked every new
    caller out. Now streams hold at most half the RPC slots (the rest get RESOURCE_EXHAUSTED at
    once), unary callers are served meanwhile, and stalled streams are cut after --stream-stall-s,
    after which streams work again."""
    with running(models["g64"], max_concurrent_rpcs=4, max_message_mb=1, max_images_per_request=256,
                 stream_stall_s=2.0) as s, GeneratorClient(s.address) as client:
        stalled = [_stalled_stream(s.address) for _ in range(4)]
        outcomes = []
        for _channel, stream in stalled:
            try:
                outcomes.append(len(next(stream).images))  # type: ignore[call-overload]
            except grpc.RpcError as e:
                outcomes.append(e.code())
        assert sorted(map(str, outcomes)) == sorted(
            ["21", "21", str(grpc.StatusCode.RESOURCE_EXHAUSTED),
             str(grpc.StatusCode.RESOURCE_EXHAUSTED)]), outcomes
        assert len(client.generate(3, seed=2).images) == 3  # not locked out
        assert client.model_info().nz == NZ
        wait_for(lambda: s.metrics.value("gan_serve_refused_total", method="GenerateStream",
                                          reason="stalled") == 2, "stalled streams cut off")
        ends = []
        for (_channel, stream), first in zip(stalled, outcomes, strict=True):
            if first == 21:  # an admitted stream: its client reads on and finds it ended
                with pytest.raises(grpc.RpcError) as cut:
                    for _ in stream:  # type: ignore[attr-defined]
                        pass
                ends.append(cut.value.code())  # type: ignore[attr-defined]
        # ended by the server at once, not left to the client's 300 s deadline
        assert ends == [grpc.StatusCode.CANCELLED] * 2
        for channel, _stream in stalled:
            channel.close()
        parts = list(client.generate_stream(64, seed=3, format="raw_float32"))
        assert sum(len(p.images) for p in parts) == 64


GARBAGE = [b"\xff" * 12, b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x12\x05ab"]


def test_undecodable_requests_are_invalid_argument_and_logged_once(
        server: GeneratorServer, caplog: pytest.LogCaptureFixture) -> None:
    """Fault 6: undecodable bodies gave INTERNAL and a traceback each."""
    methods = {"/gan.v1.Generator/Generate": "unary_unary",
               "/gan.v1.Generator/GenerateStream": "unary_stream",
               "/gan.v1.Generator/GetModelInfo": "unary_unary",
               "/grpc.health.v1.Health/Check": "unary_unary",
               "/grpc.health.v1.Health/Watch": "unary_stream"}
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(server.address) as channel:
        for _ in range(10):
            for method, kind in methods.items():
                for body in GARBAGE:
                    call = getattr(channel, kind)(method)  # no serializers: raw bytes
                    with pytest.raises(grpc.RpcError) as e:
                        result = call(body, timeout=10)
                        if kind == "unary_stream":
                            list(result)
                    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, body)
                    assert "could not be decoded" in e.value.details()
        with GeneratorClient(server.address) as client:
            assert len(client.generate(1, seed=1).images) == 1
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) == 1, [r.getMessage() for r in noisy]
    assert noisy[0].exc_info is None and "undecodable" in noisy[0].getMessage()


def test_a_port_taken_by_another_server_is_refused(models: dict[str, Path]) -> None:
    """Fault 10: gRPC sets SO_REUSEPORT, so a second server on the same port used to start and
    share the traffic with the first."""
    with running(models["g32"]) as first:
        second = GeneratorServer(ServeConfig(model=str(models["g32"]), port=first.port,
                                             providers="cpu"))
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            second.start()
        with GeneratorClient(first.address) as client:
            assert len(client.generate(1, seed=1).images) == 1
