"""Masking at the gateway: the ``hash`` key, one compiled engine per connection, and the log masker.

The engine is ``hoopgw._core.Masker`` (see docs/MASKING.md). At startup the gateway calls
``build_maskers(config, masking_key(config))`` once; every session of a connection shares its Masker.
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from hoopgw import _core
from hoopgw.config import MIN_MASKING_KEY_BYTES, masking_key_too_short
from hoopgw.errors import ConfigError, SecretError

if TYPE_CHECKING:
    from hoopgw.config import Config

__all__ = ["KEY_FILE", "KEY_SIZE", "build_maskers", "log_masker", "masking_key"]

#: The generated key's file name in ``data_dir`` (used when ``[gateway] masking_key`` is not set).
KEY_FILE = "masking_key"
#: Bytes of a generated key.
KEY_SIZE = 32
_KEY = "gateway.masking_key"


def masking_key(config: Config) -> bytes:
    """The key of the ``hash`` style: ``[gateway] masking_key`` (UTF-8 bytes of the secret), else the
    random 32-byte key in ``data_dir/masking_key``, created on first use (mode 0600) and reused after,
    so tokens stay stable across restarts.

    Raises ConfigError (key ``gateway.masking_key``) for an unresolvable or short secret, or a key file
    that cannot be read or created or does not hold exactly 32 bytes.
    """
    ref = config.gateway.masking_key
    if ref is not None:
        try:
            key = ref.resolve().encode()
        except SecretError as exc:
            raise ConfigError([(str(config.path), _KEY, str(exc))]) from None
        if len(key) < MIN_MASKING_KEY_BYTES:
            raise ConfigError([(str(config.path), _KEY, masking_key_too_short(ref, len(key)))])
        return key
    path = config.gateway.data_dir / KEY_FILE
    try:
        return _load_or_create(path)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([(str(config.path), _KEY, f"not set, and {path}: {detail}")]) from None


def _load_or_create(path: Path) -> bytes:
    """Read the key file; when there is none, create it atomically (a racing process's key wins)."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_SIZE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # appears whole or not at all, and never replaces an existing key
        except FileExistsError:
            return _read_key(path)
        _fsync_dir(path.parent)
        return key
    finally:
        tmp.unlink(missing_ok=True)


def _read_key(path: Path) -> bytes:
    with open(path, "rb") as f:
        key = f.read(KEY_SIZE + 1)
    if len(key) != KEY_SIZE:
        size = f"more than {KEY_SIZE}" if len(key) > KEY_SIZE else str(len(key))
        raise ValueError(
            f"the key file holds {size} bytes, not {KEY_SIZE}: restore it, or delete it to start over "
            "with a new key (hash tokens will change)"
        )
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_maskers(config: Config, key: bytes) -> dict[str, _core.Masker]:
    """One compiled Masker per connection named by some ``[[masking]]`` block (``"*"`` names all).

    Connections without masking get no entry. Raises ConfigError if the engine refuses the merged rules.
    """
    maskers: dict[str, _core.Masker] = {}
    for conn in config.connections:
        rules = config.masking_rules(conn.name)
        if rules is None:
            continue
        try:
            maskers[conn.name] = rules.compile(key)
        except ValueError as exc:
            raise ConfigError([(str(config.path), "masking", f"connection {conn.name}: {exc}")]) from None
    return maskers


#: Log lines keep addresses: client and listen addresses are what an operator traces an attack by.
_LOG_KEEPS = frozenset({"ipv4"})


@functools.cache
def log_masker() -> _core.Masker:
    """The process-wide Masker for log lines: every built-in detector but ``ipv4``, style ``redact``."""
    names = [name for name in _core.builtin_detectors() if name not in _LOG_KEEPS]
    return _core.Masker(detectors=[(name, "redact") for name in names])
