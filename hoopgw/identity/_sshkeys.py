"""SSH public keys registered to people (``hoopgw ssh-keys``), kept in the audit store's ``ssh_keys`` table.

A registered key lets its owner log in to the gateway's SSH listeners as that person: the key's
Principal carries the registered subject and groups, ``auth="sshkey"`` (``user:NAME`` in policies matches
it, ``key:NAME`` does not) and the key's fingerprint as ``token_id``. A key is identified by its SHA256
fingerprint as ``ssh-keygen -l`` prints it (``SHA256:`` and 43 base64 characters); removing a key is
immediate (every login reads the table) and keeps the row as history, so the key may be registered again.

Accepted: Ed25519, ECDSA (NIST P-256/384/521), their FIDO (``sk-``) variants, and RSA of at least 2048
bits. Refused with a reason: DSA, shorter RSA keys, private keys, certificates, more than one key, and
anything that is not an OpenSSH public key line.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncssh
import orjson

from hoopgw.audit._db import INTEGRITY_ERRORS, Store, unique_violation
from hoopgw.audit._tables import SqliteTables
from hoopgw.errors import HoopError, StoreError
from hoopgw.identity._keystore import check_groups
from hoopgw.identity._principal import Principal

log = logging.getLogger("hoopgw.identity")

#: The longest public key text accepted (an RSA-16384 line is about 2.8 KB).
MAX_KEY_TEXT = 16 * 1024
MAX_SUBJECT = 255
MAX_COMMENT = 200
MIN_RSA_BITS = 2048
#: Key types a person may register (the algorithm names inside the key blob).
ALLOWED_ALGORITHMS = frozenset(
    {
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-rsa",
    }
)
#: Unicode categories never kept in a subject or comment (control, format, line and paragraph separators)
_CONTROL = frozenset({"Cc", "Cf", "Zl", "Zp"})
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}\Z")
_COLUMNS = "id, subject, groups, algorithm, public_key, comment, added_by, created_at, revoked_at, revoked_by"

SshKeyStatus = Literal["active", "removed"]


class SshKeyTaken(HoopError):
    """The key is already registered (and not removed)."""


@dataclass(frozen=True, slots=True)
class ParsedSshKey:
    """A public key that passed :func:`parse_public_key`."""

    key: asyncssh.SSHKey
    fingerprint: str
    algorithm: str
    #: ``ALGORITHM BASE64`` (no comment)
    public_key: str
    comment: str


@dataclass(frozen=True, slots=True)
class SshKeyRecord:
    """One row of the ``ssh_keys`` table."""

    id: str
    subject: str
    groups: tuple[str, ...]
    algorithm: str
    public_key: str
    comment: str
    added_by: str
    created_at: float
    revoked_at: float | None = None
    revoked_by: str | None = None

    @property
    def status(self) -> SshKeyStatus:
        return "removed" if self.revoked_at is not None else "active"

    def public(self) -> dict[str, Any]:
        """What the API and CLI show (a public key is not a secret)."""
        return {
            "id": self.id,
            "fingerprint": self.id,
            "status": self.status,
            "subject": self.subject,
            "groups": list(self.groups),
            "algorithm": self.algorithm,
            "public_key": self.public_key,
            "comment": self.comment,
            "added_by": self.added_by,
            "created_at": self.created_at,
            "removed_at": self.revoked_at,
            "removed_by": self.revoked_by,
        }


def check_subject(subject: object) -> str:
    """``subject`` if it can name a person (1-255 characters, no control characters or spaces at the
    ends); ValueError otherwise."""
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT:
        raise ValueError(f"the subject must be 1-{MAX_SUBJECT} characters")
    if subject != subject.strip() or any(unicodedata.category(c) in _CONTROL for c in subject):
        raise ValueError("the subject must not contain control characters or start or end with a space")
    return subject


def fingerprint(key: asyncssh.SSHKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return str(key.get_fingerprint("sha256"))


def _blob_algorithm(blob: bytes) -> str | None:
    """The algorithm name at the start of an SSH key blob, or None if the blob is too short."""
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > len(blob) - 4 or length > 64:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def _clean_comment(comment: str) -> str:
    text = "".join(c for c in comment if unicodedata.category(c) not in _CONTROL)
    return text.strip()[:MAX_COMMENT]


def parse_public_key(text: str) -> ParsedSshKey:
    """Check one OpenSSH public key line (``ssh-ed25519 AAAA... comment``); ValueError with the reason."""
    if len(text) > MAX_KEY_TEXT:
        raise ValueError(f"the public key is longer than {MAX_KEY_TEXT} characters")
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        raise ValueError(
            "this is a PRIVATE key: never share it; register its public half (the .pub file) instead"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError("no public key given (expected one line like 'ssh-ed25519 AAAA... comment')")
    if len(lines) > 1:
        raise ValueError("give exactly one public key (one line); register several keys one at a time")
    words = lines[0].split(None, 2)
    if len(words) < 2:
        raise ValueError("not an OpenSSH public key (expected one line like 'ssh-ed25519 AAAA... comment')")
    if words[0].endswith("-cert-v01@openssh.com"):
        raise ValueError(
            "this is an SSH certificate, not a public key: register the key itself (the .pub file "
            "without -cert), or log in with `hoopgw login --ssh` to get a certificate"
        )
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not an OpenSSH public key (expected one line like 'ssh-ed25519 AAAA... comment')"
        ) from None
    algorithm = _blob_algorithm(blob)
    if algorithm != words[0]:
        raise ValueError(f"not an OpenSSH public key: the key data is not of type {words[0]!r}")
    if algorithm == "ssh-dss":
        raise ValueError("DSA keys are too weak (and OpenSSH no longer accepts them): use an Ed25519 key")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise ValueError(
            f"key type {algorithm!r} is not accepted (use ssh-ed25519, ecdsa-sha2-nistp256/384/521, "
            "their sk- variants, or ssh-rsa of at least 2048 bits)"
        )
    try:
        key = asyncssh.import_public_key(f"{words[0]} {words[1]}")
    except (asyncssh.KeyImportError, ValueError):
        raise ValueError(f"not a valid {algorithm} public key (damaged or truncated?)") from None
    if algorithm == "ssh-rsa":
        bits = int(getattr(key.pyca_key, "key_size", 0))
        if bits < MIN_RSA_BITS:
            raise ValueError(
                f"RSA keys must have at least {MIN_RSA_BITS} bits (this one has {bits}): use an Ed25519 key"
            )
    return ParsedSshKey(
        key=key,
        fingerprint=fingerprint(key),
        algorithm=algorithm,
        public_key=" ".join(key.export_public_key("openssh").decode("ascii").split()[:2]),
        comment=_clean_comment(words[2]) if len(words) > 2 else "",
    )


def _record(row: tuple[Any, ...]) -> SshKeyRecord:
    return SshKeyRecord(
        id=row[0],
        subject=row[1],
        groups=tuple(orjson.loads(row[2])),
        algorithm=row[3],
        public_key=row[4],
        comment=row[5],
        added_by=row[6],
        created_at=row[7],
        revoked_at=row[8],
        revoked_by=row[9],
    )


class SshKeyStore(SqliteTables):
    """Reads and writes the ``ssh_keys`` table; safe to share between threads (one lock)."""

    def __init__(self, where: Path | Store) -> None:
        super().__init__(where, "SSH key table")

    def add(self, subject: str, groups: Iterable[str], public_key_text: str, added_by: str) -> dict[str, Any]:
        """Register a key for ``subject`` in ``groups``; its public record.

        ValueError (with the reason) for a bad subject, group or key; SshKeyTaken when the key is
        registered already.
        """
        check_subject(subject)
        record_groups = check_groups(groups)
        parsed = parse_public_key(public_key_text)
        record = SshKeyRecord(
            id=parsed.fingerprint,
            subject=subject,
            groups=record_groups,
            algorithm=parsed.algorithm,
            public_key=parsed.public_key,
            comment=parsed.comment,
            added_by=added_by,
            created_at=time.time(),
        )
        with self._use() as conn:
            try:
                conn.execute(
                    "INSERT INTO ssh_keys (id, subject, groups, algorithm, public_key, comment, added_by,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.subject,
                        orjson.dumps(list(record.groups)).decode(),
                        record.algorithm,
                        record.public_key,
                        record.comment,
                        record.added_by,
                        record.created_at,
                    ),
                )
            except INTEGRITY_ERRORS as exc:
                if not unique_violation(exc, "ssh_keys.id", "ssh_keys_live"):
                    raise
                taken = True
            else:
                taken = False
        if taken:
            owner = self._live(record.id)
            whose = f" (to {owner.subject})" if owner is not None else ""
            raise SshKeyTaken(
                f"the key {record.id} is already registered{whose}: remove it first to re-register it"
            )
        return record.public()

    def _live(self, key_id: str) -> SshKeyRecord | None:
        with self._peek() as conn:
            if conn is None:
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM ssh_keys WHERE id = ? AND revoked_at IS NULL",  # noqa: S608 - a constant column list
                (key_id,),
            ).fetchone()
        return _record(row) if row is not None else None

    def lookup(self, key_id: str) -> SshKeyRecord | None:
        """The registered (not removed) key with fingerprint ``key_id``, or None."""
        return self._live(key_id)

    def records(self) -> list[SshKeyRecord]:
        """Every key, removed ones too, newest first."""
        with self._peek() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM ssh_keys ORDER BY created_at DESC, seq DESC"  # noqa: S608 - a constant column list
            ).fetchall()
        return [_record(row) for row in rows]

    def list(self) -> list[dict[str, Any]]:
        """Every key's public record, removed ones too (``status``), newest first."""
        return [r.public() for r in self.records()]

    def remove(self, id_or_fingerprint: str, by: str, now: float | None = None) -> bool:
        """Remove the registered key ``id_or_fingerprint`` (``SHA256:...``, the prefix optional);
        False when no such key is registered. Logins with it are refused from now on."""
        ref = id_or_fingerprint.strip()
        if not ref.startswith("SHA256:"):
            ref = "SHA256:" + ref
        if not _FINGERPRINT.match(ref):
            return False
        at = time.time() if now is None else now
        with self._use() as conn, self._immediate(conn):
            cursor = conn.execute(
                "UPDATE ssh_keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
                (at, by, ref),
            )
            changed = cursor.rowcount
        return bool(changed)

    def removed(self, id_or_fingerprint: str) -> SshKeyRecord | None:
        """The most recently removed row of a key (for the answer to a removal), or None."""
        ref = id_or_fingerprint if id_or_fingerprint.startswith("SHA256:") else "SHA256:" + id_or_fingerprint
        with self._peek() as conn:
            if conn is None:
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM ssh_keys WHERE id = ? AND revoked_at IS NOT NULL"  # noqa: S608 - a constant column list
                " ORDER BY revoked_at DESC, seq DESC LIMIT 1",
                (ref,),
            ).fetchone()
        return _record(row) if row is not None else None

    def principal_for(self, key: asyncssh.SSHKey) -> Principal | None:
        """The person ``key`` is registered to (``auth="sshkey"``), or None (unknown, removed, or the
        store cannot be read: a refusal, never a crash of the login). Synchronous: call it on a worker
        thread."""
        fp = fingerprint(key)
        try:
            record = self._live(fp)
        except StoreError as exc:
            log.warning("SSH key store unavailable", extra={"error": str(exc)})
            return None
        if record is None:
            return None
        offered = key.export_public_key("openssh").decode("ascii").split()
        if offered[:2] != record.public_key.split()[:2]:  # the same fingerprint, another key: never
            return None
        return Principal(
            subject=record.subject, groups=frozenset(record.groups), auth="sshkey", token_id=record.id
        )


__all__ = [
    "ParsedSshKey",
    "SshKeyRecord",
    "SshKeyStore",
    "SshKeyTaken",
    "check_subject",
    "fingerprint",
    "parse_public_key",
]
