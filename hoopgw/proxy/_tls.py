"""TLS contexts: the gateway's own certificate (self-signed on first run) and upstream verification modes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hoopgw.errors import ConfigError

if TYPE_CHECKING:
    from hoopgw.config import GatewayConfig, SecretRef

_CERT_NAME = "gateway.crt"
_KEY_NAME = "gateway.key"


def ensure_self_signed(tls_dir: Path) -> tuple[Path, Path]:
    """Create (once) a self-signed certificate for localhost/127.0.0.1 in ``tls_dir``; return (cert, key)."""
    cert_path, key_path = tls_dir / _CERT_NAME, tls_dir / _KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hoopgw")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _material_path(ref: SecretRef, tls_dir: Path, name: str) -> Path:
    """A file: reference is used in place; an env: reference is written to a private file for OpenSSL."""
    if ref.kind == "file":
        return Path(ref.target)
    path = tls_dir / name
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_atomic(path, ref.resolve().encode(), 0o600)
    return path


def server_context(gateway: GatewayConfig) -> ssl.SSLContext:
    """The context the gateway presents to clients (configured, or self-signed in data_dir/tls)."""
    tls_dir = gateway.data_dir / "tls"
    if gateway.tls_cert is not None and gateway.tls_key is not None:
        cert = _material_path(gateway.tls_cert, tls_dir, "configured.crt")
        key = _material_path(gateway.tls_key, tls_dir, "configured.key")
    else:
        cert, key = ensure_self_signed(tls_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([(str(cert), "gateway.tls_cert", f"cannot load certificate/key: {exc}")]) from exc
    return ctx


def upstream_context(sslmode: str, rootcert: Path | None) -> ssl.SSLContext | None:
    """Client context for the upstream per libpq sslmode; None for ``disable``."""
    if sslmode == "disable":
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if sslmode in ("verify-ca", "verify-full"):
        if rootcert is not None:
            ctx.load_verify_locations(cafile=str(rootcert))
        else:
            ctx.load_default_certs()
        ctx.check_hostname = sslmode == "verify-full"
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
