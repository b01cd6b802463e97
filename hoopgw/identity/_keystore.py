"""The API key table in the gateway's audit store (``data_dir/audit.db``, or the PostgreSQL store of
``[audit] store``): hashes, never keys.

Every write is its own durable transaction on this object's own connection, so a key exists, or is
revoked, for every reader as soon as a call returns.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from hoopgw.audit._db import INTEGRITY_ERRORS, Store, unique_violation
from hoopgw.audit._tables import SqliteTables
from hoopgw.errors import HoopError

#: Key and group names: 1-63 characters, a letter or digit first, then letters, digits, ``_ . -``.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
MAX_GROUPS = 64
DEFAULT_EXPIRY = 90 * 86400.0
MAX_EXPIRY = 366 * 86400.0
_COLUMNS = "id, name, hash, groups, created_by, created_at, expires_at, revoked_at, revoked_by"

KeyStatus = Literal["active", "revoked", "expired"]


class KeyNameTaken(HoopError):
    """Another key that is not revoked already has this name."""


class KeyNotFound(HoopError):
    """No key that is not revoked has this name or id."""


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a valid key or group name; ValueError otherwise."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(
            f"{what} must be 1-63 characters: a letter or digit, then letters, digits, '_', '.' or '-'"
        )
    return name


def check_groups(groups: Iterable[object]) -> tuple[str, ...]:
    """Sorted, de-duplicated valid group names; ValueError otherwise."""
    out = sorted({check_name(g, "each group") for g in groups})
    if len(out) > MAX_GROUPS:
        raise ValueError(f"a key may have at most {MAX_GROUPS} groups")
    return tuple(out)


def check_expiry(seconds: float) -> float:
    """``seconds`` if it is a valid key lifetime (positive, at most 366 days); ValueError otherwise."""
    if not seconds > 0:
        raise ValueError("the expiry must be positive")
    if seconds > MAX_EXPIRY:
        raise ValueError(f"the expiry may be at most {MAX_EXPIRY / 86400:.0f} days")
    return float(seconds)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One row of the key table (``hash`` is SHA-256 of the key)."""

    id: str
    name: str
    hash: bytes
    groups: tuple[str, ...]
    created_by: str
    created_at: float
    expires_at: float
    revoked_at: float | None = None
    revoked_by: str | None = None

    def status(self, now: float | None = None) -> KeyStatus:
        """``revoked``, ``expired`` or ``active`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return "active"

    def public(self, now: float | None = None) -> dict[str, Any]:
        """What the API and CLI show: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status(now),
            "groups": list(self.groups),
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
        }


def _record(row: tuple[Any, ...]) -> ApiKeyRecord:
    groups = orjson.loads(row[3])
    return ApiKeyRecord(
        id=row[0],
        name=row[1],
        hash=bytes(row[2]),
        groups=tuple(groups),
        created_by=row[4],
        created_at=row[5],
        expires_at=row[6],
        revoked_at=row[7],
        revoked_by=row[8],
    )


class ApiKeyStore(SqliteTables):
    """Reads and writes the ``api_keys`` table; safe to share between threads (one lock)."""

    def __init__(self, data_dir: Path | Store) -> None:
        super().__init__(data_dir, "API key table")

    def lookup(self, key_id: str) -> ApiKeyRecord | None:
        """The key with id ``key_id`` (revoked or not), or None."""
        with self._peek() as conn:
            if conn is None:
                return None
            row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()  # noqa: S608
        return _record(row) if row is not None else None

    def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, newest first."""
        with self._peek() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"  # noqa: S608
            ).fetchall()
        return [_record(row) for row in rows]

    def add(self, record: ApiKeyRecord) -> None:
        """Insert a new key; KeyNameTaken if a key not revoked has its name, KeyError if its id exists."""
        with self._use() as conn:
            try:
                conn.execute(
                    "INSERT INTO api_keys (id, name, hash, groups, created_by, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.name,
                        record.hash,
                        orjson.dumps(list(record.groups)).decode(),
                        record.created_by,
                        record.created_at,
                        record.expires_at,
                    ),
                )
            except INTEGRITY_ERRORS as exc:
                if unique_violation(exc, "api_keys.name", "api_keys_live_name"):
                    raise KeyNameTaken(
                        f"an API key named {record.name!r} already exists (revoke it first to reuse the name)"
                    ) from None
                if unique_violation(exc, "api_keys.id", "api_keys_pkey"):
                    raise KeyError(record.id) from None
                raise

    def revoke(self, ref: str, revoked_by: str, now: float | None = None) -> ApiKeyRecord:
        """Revoke the key not yet revoked named ``ref`` (else with id ``ref``); KeyNotFound if none."""
        at = time.time() if now is None else now
        with self._use() as conn, self._immediate(conn):
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND name = ?",  # noqa: S608
                (ref,),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND id = ?",  # noqa: S608
                    (ref,),
                ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                    (at, revoked_by, row[0]),
                )
        if row is None:
            raise KeyNotFound(f"no API key named {ref!r} (or it is already revoked)")
        return dataclasses.replace(_record(row), revoked_at=at, revoked_by=revoked_by)
