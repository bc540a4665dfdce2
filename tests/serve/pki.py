"""A throwaway certificate authority for the TLS tests (the `cryptography` package): a CA, a
server certificate for localhost and 127.0.0.1, a client certificate, and a rogue CA with a
client certificate of its own."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, key: Key, issuer: tuple[x509.Certificate, Key] | None,
                 *, server: bool = False) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (cert, key) or self-signed (a CA)."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if issuer is None:
        builder = builder.issuer_name(_name(subject)).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True)
        signer = key
    else:
        builder = builder.issuer_name(issuer[0].subject)
        signer = issuer[1]
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: Key) -> tuple[str, str]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def make_pki(folder: Path) -> dict[str, str]:
    """PEM paths in `folder`: ca, server and server_key, client and client_key (signed by ca),
    rogue_ca, rogue and rogue_key (signed by rogue_ca)."""
    paths: dict[str, str] = {}
    for ca_name, leaves in (("ca", ("server", "client")), ("rogue_ca", ("rogue",))):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate(f"{ca_name} test CA", ca_key, None)
        paths[ca_name], _ = _write(folder, ca_name, ca, ca_key)
        for leaf in leaves:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(leaf, key, (ca, ca_key), server=leaf == "server")
            paths[leaf], paths[f"{leaf}_key"] = _write(folder, leaf, cert, key)
    return paths
