"""A private CA and a server certificate, so the local twin speaks TLS like Neon.

Neon accepts only TLS. Locally, `sslmode=require` and `verify-full` can only be proven
against a server whose certificate a client can check: these files are made once, kept
with the local server's data, and the CA is what a client passes as `sslrootcert`.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1",)


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool, san=None):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_ca(folder: Path, common_name: str = "neon-migrate local CA"):
    """A CA certificate and key, written to folder/ca.crt (the key stays in memory)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(common_name), _name(common_name), key.public_key(), key, ca=True)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def ensure_certificates(folder: Path) -> Certificates:
    """The CA and server certificate in `folder`, made on first use and reused after."""
    certs = Certificates(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    if all(p.exists() for p in (certs.ca_file, certs.cert_file, certs.key_file)):
        return certs
    from cryptography import x509  # imported only when certificates are made
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_cert, ca_key = make_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in SERVER_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    )
    cert = _certificate(
        _name(SERVER_IPS[0]), ca_cert.subject, key.public_key(), ca_key, ca=False, san=san
    )
    _write(certs.key_file, _pem_key(key), 0o600)  # PostgreSQL refuses a key others can read
    _write(certs.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return certs
