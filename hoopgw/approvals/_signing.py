"""The approvals signing key: Ed25519 in ``data_dir``, its key id, and its public half as PEM or base64url."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoopgw.errors import HoopError
from hoopgw.identity._keyfile import load_or_create_key

#: The key's file name in ``data_dir`` (PKCS#8 PEM, mode 0600).
SIGNING_KEY_FILE = "approvals_ed25519.pem"
_RAW_B64 = re.compile(r"[A-Za-z0-9_-]{43}")


def signing_key_path(data_dir: Path) -> Path:
    """Where the approvals signing key lives in ``data_dir``."""
    return Path(data_dir) / SIGNING_KEY_FILE


def load_signing_key(data_dir: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """The approvals signing key in ``data_dir``; created (0600, atomically) when absent and ``create``."""
    path = signing_key_path(data_dir)
    if not create and not path.exists():
        raise HoopError(f"no approvals signing key at {path} (the gateway creates it on first use)")
    return load_or_create_key(path, "approval signing key")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly; ValueError unless ``text`` is a canonical encoding."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("not unpadded base64url") from None
    if b64url(data) != text:  # unused trailing bits set: a second spelling of the same bytes
        raise ValueError("not the canonical base64url encoding")
    return data


def public_raw(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of the public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The raw public key as unpadded base64url (the JWK ``x``)."""
    return b64url(public_raw(public_key))


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as a SubjectPublicKeyInfo PEM block."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem.decode("ascii")


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url) of the OKP/Ed25519 public key."""
    jwk = '{"crv":"Ed25519","kty":"OKP","x":"' + public_key_b64(public_key) + '"}'
    return b64url(hashlib.sha256(jwk.encode("ascii")).digest())


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (text around the block is ignored) or 43 characters of base64url.

    Raises ValueError with a reason when ``data`` holds neither.
    """
    text = data.strip()
    if _RAW_B64.fullmatch(text.decode("ascii", "replace")):
        return Ed25519PublicKey.from_public_bytes(b64url_decode(text.decode("ascii")))
    if b"-----BEGIN PUBLIC KEY-----" not in text:
        raise ValueError("not a PEM public key (no BEGIN PUBLIC KEY line) nor a base64url Ed25519 key")
    try:
        key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError):
        raise ValueError("the PEM public key cannot be decoded") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the PEM public key is not an Ed25519 key")  # noqa: TRY004 - a content error
    return key
