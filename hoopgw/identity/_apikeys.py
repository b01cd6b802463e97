"""API keys for service accounts and AI agents: the key format and the verifier.

A key is one word a secret scanner can find, modelled on GitHub's token format::

    hoopgw_ + ID (12) + SECRET (32) + CHECKSUM (6)        57 characters, all [A-Za-z0-9] after "hoopgw_"

- ``ID``: 12 random base62 characters (71 bits); the key's public id, shown by ``hoopgw keys list``.
- ``SECRET``: 32 random base62 characters (190 bits), from ``secrets``.
- ``CHECKSUM``: CRC32 of ``hoopgw_`` + ID + SECRET, as 6 base62 digits (most significant first,
  zero-padded). It catches typos and truncation offline, and lets scanners drop false positives
  without asking the gateway.

A scanner's pattern: ``\\bhoopgw_[0-9A-Za-z]{50}\\b``. The gateway keeps only ``SHA-256(key)`` (see
``hoopgw.identity._keystore``); the key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from hoopgw.errors import AuthError, StoreError
from hoopgw.identity._keystore import ApiKeyRecord, ApiKeyStore, check_expiry, check_groups, check_name
from hoopgw.identity._principal import Principal

log = logging.getLogger("hoopgw.identity")

PREFIX = "hoopgw_"
ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: What a secret scanner looks for.
KEY_PATTERN = re.compile(rf"\bhoopgw_[0-9A-Za-z]{{{KEY_LENGTH - len(PREFIX)}}}\b")
_BODY = re.compile(rf"[0-9A-Za-z]{{{KEY_LENGTH - len(PREFIX)}}}\Z")
_ALNUM = re.compile(r"[0-9A-Za-z]*\Z")


class ApiKeyError(AuthError):
    """An API key is malformed, unknown, revoked or expired (the reason never contains the key)."""


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """The parts of a well-formed key."""

    key_id: str
    secret: str


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def checksum(body: str) -> str:
    """The 6-character checksum of ``hoopgw_`` + ID + SECRET."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def _random(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_key_id() -> str:
    """A fresh random key id."""
    return _random(ID_LENGTH)


def format_key(key_id: str, secret: str) -> str:
    """The full key for ``key_id`` and ``secret`` (checksum appended); ValueError for bad parts."""
    if len(key_id) != ID_LENGTH or len(secret) != SECRET_LENGTH or not _ALNUM.match(key_id + secret):
        raise ValueError("an API key id and secret are base62 strings of 12 and 32 characters")
    body = PREFIX + key_id + secret
    return body + checksum(body)


def new_key(key_id: str | None = None) -> str:
    """A fresh key (with a fresh id unless ``key_id`` is given)."""
    return format_key(key_id or new_key_id(), _random(SECRET_LENGTH))


def looks_like_key(secret: str) -> bool:
    """Cheap shape test: the ``hoopgw_`` prefix (the full check is :func:`parse_key`)."""
    return secret.startswith(PREFIX)


def parse_key(key: str) -> ParsedKey:
    """Split a key into id and secret; ApiKeyError when it is malformed or its checksum is wrong."""
    if not key.startswith(PREFIX):
        raise ApiKeyError("not an API key (it must start with 'hoopgw_')")
    if len(key) != KEY_LENGTH or not _BODY.match(key[len(PREFIX) :]):
        raise ApiKeyError(
            f"API key is malformed (expected {KEY_LENGTH} characters: 'hoopgw_' and 50 letters or digits)"
        )
    body, check = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum(body), check):
        raise ApiKeyError("API key checksum does not match (mistyped or truncated key?)")
    rest = body[len(PREFIX) :]
    return ParsedKey(key_id=rest[:ID_LENGTH], secret=rest[ID_LENGTH:])


def key_hash(key: str) -> bytes:
    """What the store keeps instead of the key: SHA-256 of the whole key."""
    return hashlib.sha256(key.encode("ascii")).digest()


def create_key(
    store: ApiKeyStore,
    name: str,
    groups: Iterable[str],
    expires_in: float,
    created_by: str,
) -> tuple[ApiKeyRecord, str]:
    """Store a new key (durably) and return its record and the key itself, which is never stored.

    ValueError for a bad name, group or lifetime; KeyNameTaken when a key not revoked has ``name``.
    """
    record_groups = check_groups(groups)
    lifetime = check_expiry(expires_in)
    check_name(name)
    for _ in range(3):
        key = new_key()
        now = time.time()
        record = ApiKeyRecord(
            id=parse_key(key).key_id,
            name=name,
            hash=key_hash(key),
            groups=record_groups,
            created_by=created_by,
            created_at=now,
            expires_at=now + lifetime,
        )
        try:
            store.add(record)
        except KeyError:  # a 71-bit id collided: draw another
            continue
        return record, key
    raise StoreError("cannot allocate a unique API key id")


class ApiKeyVerifier:
    """The ``Verifier`` for API keys: reads the key store on every check, so revocation is immediate.

    The look-up is one primary-key read of the local SQLite store (WAL: readers never wait for the
    writer), done without suspending, so a revocation either precedes it or sees the new session.
    """

    def __init__(self, store: ApiKeyStore) -> None:
        self.store = store

    def accepts(self, secret: str) -> bool:
        return looks_like_key(secret)

    async def verify(self, secret: str) -> Principal:
        """The key's Principal; ApiKeyError (never echoing the key) when it is not valid now."""
        return self.verify_now(secret, time.time())

    def verify_now(self, secret: str, now: float) -> Principal:
        """Synchronous check of ``secret`` at time ``now``."""
        parsed = parse_key(secret)
        try:
            record = self.store.lookup(parsed.key_id)
        except StoreError as exc:  # a refusal with a reason, not a crash of the login
            log.warning("API key store unavailable", extra={"error": str(exc)})
            raise ApiKeyError("API keys cannot be checked now (the key store is unavailable)") from None
        # Compare even when the id is unknown, so both refusals take the same time.
        stored = record.hash if record is not None else b"\0" * 32
        if not hmac.compare_digest(stored, key_hash(secret)) or record is None:
            raise ApiKeyError("API key is unknown (not issued by this gateway, or deleted)")
        if record.revoked_at is not None:
            raise ApiKeyError(f"API key {record.name!r} was revoked")
        if record.expires_at <= now:
            raise ApiKeyError(f"API key {record.name!r} has expired")
        return Principal(
            subject=record.name,
            groups=frozenset(record.groups),
            auth="apikey",
            expires_at=record.expires_at,
            token_id=record.id,
        )
