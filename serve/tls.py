"""TLS credentials for the gRPC port, from PEM files: the server's (`gan serve --tls-cert
--tls-key [--tls-client-ca]`) and the client's (`GeneratorClient(tls=...)`, `gan generate
--tls-ca [--tls-cert --tls-key]`). Unreadable or non-PEM files are one-line errors here, before
gRPC sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from gan.errors import UserError


class TLSFileError(UserError):
    """A certificate or key file that cannot be used."""


def read_pem(path: str | Path, what: str) -> bytes:
    """The bytes of PEM file `path` (a certificate or key, named `what` in errors)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TLSFileError(f"cannot read the {what} {path}: {e.strerror}") from None
    if b"-----BEGIN " not in data:
        raise TLSFileError(f"the {what} {path} is not a PEM file (no -----BEGIN line)")
    return data


def server_credentials(cert: str, key: str, client_ca: str | None = None
                       ) -> grpc.ServerCredentials:
    """TLS with certificate chain `cert` and private key `key`; with `client_ca`, mutual TLS:
    clients must present a certificate signed by it, or the handshake fails."""
    pair = (read_pem(key, "TLS key"), read_pem(cert, "TLS certificate"))
    roots = None if client_ca is None else read_pem(client_ca, "client CA certificate")
    return grpc.ssl_server_credentials([pair], root_certificates=roots,
                                       require_client_auth=client_ca is not None)


@dataclass(frozen=True, kw_only=True)
class ClientTLS:
    """How a client verifies the server and, for mutual TLS, proves who it is (PEM paths)."""

    ca: str | None = None  # verifies the server's certificate; None: the system's roots
    cert: str | None = None  # the client's certificate, for servers that require one
    key: str | None = None  # its private key

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise TLSFileError("a client certificate needs its key, and a key its certificate")
        return grpc.ssl_channel_credentials(
            root_certificates=None if self.ca is None else read_pem(self.ca, "TLS CA"),
            private_key=None if self.key is None else read_pem(self.key, "TLS client key"),
            certificate_chain=None if self.cert is None else read_pem(self.cert,
                                                                      "TLS client certificate"))
