"""TLS and mutual TLS on the gRPC port, with a throwaway CA made here (the `cryptography`
package): plaintext, untrusting and unsigned clients are refused; a good client gets images,
through the Python client and through `gan generate --server`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from gan.cli import app
from serve.client import GeneratorClient
from serve.config import ServeConfigError
from serve.server import GeneratorServer
from serve.tls import ClientTLS, TLSFileError
from tests.helpers import running
from tests.serve.pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_server(models: dict[str, Path], pki: dict[str, str]) -> Iterator[GeneratorServer]:
    with running(models["g32"], tls_cert=pki["server"], tls_key=pki["server_key"],
                 tls_client_ca=pki["ca"]) as s:
        yield s


def _refused(address: str, tls: ClientTLS | None) -> grpc.StatusCode:
    with GeneratorClient(address, tls=tls, timeout_s=10) as client:
        with pytest.raises(grpc.RpcError) as e:
            client.generate(1, seed=1)
        return e.value.code()


def test_mutual_tls_refuses_plaintext_and_unsigned_clients(mtls_server: GeneratorServer,
                                                          pki: dict[str, str]) -> None:
    address = mtls_server.address
    good = ClientTLS(ca=pki["ca"], cert=pki["client"], key=pki["client_key"])
    with GeneratorClient(address, tls=good) as client:
        assert len(client.generate(3, seed=1).images) == 3
    unavailable = grpc.StatusCode.UNAVAILABLE
    assert _refused(address, None) == unavailable  # plaintext
    assert _refused(address, ClientTLS(ca=pki["ca"])) == unavailable  # no client certificate
    assert _refused(address, ClientTLS(ca=pki["ca"], cert=pki["rogue"],
                                       key=pki["rogue_key"])) == unavailable  # another CA's
    assert _refused(address, ClientTLS(ca=pki["rogue_ca"], cert=pki["client"],
                                       key=pki["client_key"])) == unavailable  # untrusted server


def test_tls_without_client_certificates(models: dict[str, Path], pki: dict[str, str]) -> None:
    with running(models["g32"], tls_cert=pki["server"], tls_key=pki["server_key"]) as s:
        with GeneratorClient(s.address, tls=ClientTLS(ca=pki["ca"])) as client:
            assert len(client.generate(2, seed=1).images) == 2
        assert _refused(s.address, None) == grpc.StatusCode.UNAVAILABLE


def test_gan_generate_over_mutual_tls(mtls_server: GeneratorServer, pki: dict[str, str],
                                      tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["generate", "--server", mtls_server.address, "-n", "4", "--seed", "2"]
    good = runner.invoke(app, [*base, "--tls-ca", pki["ca"], "--tls-cert", pki["client"],
                               "--tls-key", pki["client_key"], "--out", str(tmp_path / "a.png")])
    assert good.exit_code == 0, good.output
    assert (tmp_path / "a.png").stat().st_size > 0
    unsigned = runner.invoke(app, [*base, "--tls-ca", pki["ca"], "--timeout-s", "10",
                                   "--out", str(tmp_path / "b.png")])
    assert unsigned.exit_code == 1 and "cannot reach a server" in str(unsigned.exception)
    assert not (tmp_path / "b.png").exists()


def test_tls_settings_that_cannot_work_are_one_line_errors(models: dict[str, Path],
                                                           pki: dict[str, str],
                                                           tmp_path: Path) -> None:
    with pytest.raises(ServeConfigError, match="--tls-cert and --tls-key together"):
        running(models["g32"], tls_cert=pki["server"]).__enter__()
    with pytest.raises(ServeConfigError, match="needs --tls-cert"):
        running(models["g32"], tls_client_ca=pki["ca"]).__enter__()
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TLSFileError, match="is not a PEM file"):
        running(models["g32"], tls_cert=str(tmp_path / "junk.pem"),
                tls_key=pki["server_key"]).__enter__()
    with pytest.raises(TLSFileError, match="cannot read the TLS key"):
        running(models["g32"], tls_cert=pki["server"],
                tls_key=str(tmp_path / "missing.key")).__enter__()


def test_metrics_bind_to_metrics_host_not_to_the_grpc_host(models: dict[str, Path]) -> None:
    """Exposing gRPC (--host) must not expose metrics: they follow --metrics-host alone. Two
    loopback addresses stand in for a public and a private one (Linux routes all of 127/8)."""
    import socket
    import urllib.request

    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("this system has no 127.0.0.2")
    with running(models["g32"], host="127.0.0.2", metrics_port=0) as s:
        assert s.address.startswith("127.0.0.2:")
        url = f"http://127.0.0.1:{s.metrics_port}/metrics"
        assert b"gan_serve_requests" in urllib.request.urlopen(url, timeout=10).read()
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.2:{s.metrics_port}/metrics", timeout=10)
