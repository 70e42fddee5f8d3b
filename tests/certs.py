"""A certificate authority made in the test, and certificates it signs, as PEM files.

With the ``cryptography`` package when it is installed, else with the ``openssl`` command; the
test is skipped when neither is there.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - the openssl road below
    x509 = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def make_ca(directory: Path, name: str) -> Issued:
    """A self-signed CA called ``name`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = Issued(directory / f"{name}.pem", directory / f"{name}.key")
    if x509 is None:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", out.key, "-out", out.cert, "-days", "1", "-subj", f"/CN={name}")  # fmt: skip
        return out
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(subject, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(out, cert, key)
    return out


def issue(ca: Issued, directory: Path, name: str, *, client: bool = False) -> Issued:
    """A certificate for localhost and 127.0.0.1 (a server's, or a client's) signed by ``ca``."""
    out = Issued(directory / f"{name}.pem", directory / f"{name}.key")
    if x509 is None:
        ext = directory / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text(f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        csr = directory / f"{name}.csr"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", out.key, "-out", csr, "-subj", f"/CN={name}")  # fmt: skip
        _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
                 "-out", out.cert, "-days", "1", "-extfile", ext)  # fmt: skip
        return out
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        _builder(subject, ca_cert.subject, key)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )  # fmt: skip
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write(out, cert, key)
    return out


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _write(out: Issued, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip


def _openssl(*args: object) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("neither the cryptography package nor the openssl command is installed")
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
