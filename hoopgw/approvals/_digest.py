"""Statement digests: HMAC-SHA256 under a gateway-local key, over an unambiguous encoding of sql + params.

A bare hash of ``UPDATE cards SET pan = '4111…'`` could be brute-forced back to the card number (the
space of card numbers is small); an HMAC under a 32-byte key kept in ``data_dir`` cannot, without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Sequence
from pathlib import Path

from hoopgw.errors import HoopError

#: The digest key's file name in ``data_dir`` (32 random bytes, mode 0600).
DIGEST_KEY_FILE = "digest_key"
DIGEST_KEY_SIZE = 32
#: The prefix of every statement digest (names the algorithm).
DIGEST_PREFIX = "hmac-sha256:"
# Domain separation: these bytes start every digested message, so the key cannot be reused to forge
# a digest of some other structure.
_DOMAIN = b"hoopgw statement v1\x00"


def statement_digest(
    key: bytes,
    sql: str,
    params: Sequence[str | bytes | None] = (),
    more: Sequence[Sequence[str | bytes | None]] = (),
) -> str:
    """``hmac-sha256:<hex>`` of ``sql`` and ``params`` (text, raw bytes as sent, or None for NULL),
    and of ``more``: the parameter lists of further executions (the other Binds of a batch).

    The message is length-prefixed throughout, so no two (sql, params, more) share an encoding:
    domain tag, u64 length + UTF-8 sql, u32 count, then per param a tag byte (0 NULL, 1 value) and,
    for values, u64 length + bytes (text as UTF-8); then, only when ``more`` is not empty, u32 its
    length and each list as ``params`` was. All integers are big-endian.
    """
    if len(key) < DIGEST_KEY_SIZE:
        raise ValueError(f"the digest key must be at least {DIGEST_KEY_SIZE} bytes, not {len(key)}")
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    text = sql.encode("utf-8")
    mac.update(struct.pack(">Q", len(text)) + text)
    _params(mac, params)
    if more:
        mac.update(struct.pack(">I", len(more)))
        for each in more:
            _params(mac, each)
    return DIGEST_PREFIX + mac.hexdigest()


def _params(mac: hmac.HMAC, params: Sequence[str | bytes | None]) -> None:
    mac.update(struct.pack(">I", len(params)))
    for param in params:
        if param is None:
            mac.update(b"\x00")
            continue
        value = param.encode("utf-8") if isinstance(param, str) else bytes(param)
        mac.update(b"\x01" + struct.pack(">Q", len(value)) + value)


def digest_key_path(data_dir: Path) -> Path:
    """Where the statement-digest key lives in ``data_dir``."""
    return Path(data_dir) / DIGEST_KEY_FILE


def load_digest_key(data_dir: Path) -> bytes:
    """The digest key in ``data_dir``, created on first use (0600, atomically; a racing creator wins)."""
    path = digest_key_path(data_dir)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_bytes(DIGEST_KEY_SIZE)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # appears whole or not at all, and never replaces an existing key
            except FileExistsError:
                return _read(path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise HoopError(f"cannot create the statement-digest key {path}: {exc.strerror or exc}") from None
    return key


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read(DIGEST_KEY_SIZE + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise HoopError(f"cannot read the statement-digest key {path}: {exc.strerror or exc}") from None
    if len(key) != DIGEST_KEY_SIZE:
        size = str(len(key)) if len(key) <= DIGEST_KEY_SIZE else f"more than {DIGEST_KEY_SIZE}"
        raise HoopError(
            f"the statement-digest key {path} holds {size} bytes, not {DIGEST_KEY_SIZE}: restore it"
            " (without it the digests in existing records cannot be recomputed)"
        )
    return key
