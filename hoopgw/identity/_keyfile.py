"""The local issuer's Ed25519 key: created once, atomically, readable only by its owner."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.errors import HoopError


def load_or_create_key(path: Path, what: str = "issuer key") -> Ed25519PrivateKey:
    """Load the PEM key at ``path``, creating it (mode 0600, atomically, never clobbering) if absent.

    ``what`` names the key in error messages ("issuer key", "approval signing key").
    """
    try:
        return _load(path, what)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise HoopError(f"cannot create {path.parent} for the {what}: {exc.strerror}") from None
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: then use its key
        except FileExistsError:
            return _load(path, what)
    except OSError as exc:
        raise HoopError(f"cannot write the {what} {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return key


def _load(path: Path, what: str) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise HoopError(f"cannot read the {what} {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise HoopError(f"the {what} {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HoopError(f"the {what} {path} is not an Ed25519 key")
    return key
