"""The pack's ``MANIFEST.json``: the SHA-256 of every file, signed with the gateway's Ed25519 key.

The manifest is a record in the canonical encoding of docs/APPROVALS.md with a ``type`` of its own,
``evidence_manifest``: ``verify_record`` (approvals) and ``check_checkpoint`` (the audit chain) refuse
that type, and :func:`check_manifest` refuses theirs, so a signature made for one can never pass as
another.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoopgw.approvals import RecordError, key_id
from hoopgw.audit._chain import check_signature, sign_body

MANIFEST = "evidence_manifest"
MANIFEST_VERSION = 1
MANIFEST_FILE = "MANIFEST.json"
EVENTS_FILE = "events.jsonl"
SESSIONS_FILE = "sessions.csv"
APPROVALS_FILE = "approvals.jsonl"
PROMPTS_FILE = "prompts.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
PURGES_FILE = "purges.jsonl"
CHAIN_FILE = "chain.json"
PUBLIC_KEY_FILE = "public_key.pem"
REPORT_FILE = "report.html"
#: Every file of a pack besides the manifest, in the order the manifest lists them.
PACK_FILES = (
    EVENTS_FILE,
    SESSIONS_FILE,
    APPROVALS_FILE,
    PROMPTS_FILE,
    CHECKPOINTS_FILE,
    PURGES_FILE,
    CHAIN_FILE,
    PUBLIC_KEY_FILE,
    REPORT_FILE,
)
#: What the manifest counts (lines of the files, events also by seq).
COUNTS = ("approval_records", "checkpoints", "events", "prompts", "purges", "sessions")
_FIELDS = (
    "counts",
    "created_at",
    "files",
    "first_seq",
    "key_id",
    "last_seq",
    "since",
    "type",
    "until",
    "version",
)
_HEX = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file as 64 lowercase hex digits (what ``sha256sum`` prints)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sign_manifest(key: Ed25519PrivateKey, body: Mapping[str, Any]) -> dict[str, Any]:
    """The signed manifest: ``body`` (every field but ``signature``) and its Ed25519 signature."""
    record = {**body, "version": MANIFEST_VERSION, "type": MANIFEST, "key_id": key_id(key.public_key())}
    check_fields(record)
    return sign_body(key, record)


def check_fields(body: Mapping[str, Any]) -> None:
    """Check an unsigned manifest's fields and their types; RecordError naming the first bad one."""
    if sorted(body) != list(_FIELDS):
        missing = sorted(set(_FIELDS) - set(body))
        code = "missing_field" if missing else "extra_field"
        names = missing or sorted(set(body) - set(_FIELDS))
        raise RecordError(f"{code.replace('_', ' ')}: {', '.join(names)}", code=code, field=names[0])
    if body["version"] != MANIFEST_VERSION or type(body["version"]) is not int:
        raise RecordError(
            f"version {body['version']!r} is not supported", code="wrong_version", field="version"
        )
    if body["type"] != MANIFEST:
        raise RecordError(f"type {body['type']!r} is not {MANIFEST!r}", code="unknown_type", field="type")
    for name in ("created_at", "until"):
        _int(body[name], name)
    for name in ("since", "first_seq", "last_seq"):
        if body[name] is not None:
            _int(body[name], name)
    counts = body["counts"]
    if type(counts) is not dict or sorted(counts) != list(COUNTS):
        raise RecordError(f"counts must hold exactly {', '.join(COUNTS)}", code="bad_field", field="counts")
    for name, value in counts.items():
        _int(value, f"counts.{name}")
    files = body["files"]
    if type(files) is not dict or not files:
        raise RecordError("files must be a non-empty object", code="bad_field", field="files")
    for name, entry in files.items():
        where = f"files.{name}"
        if type(entry) is not dict or sorted(entry) != ["bytes", "sha256"]:
            raise RecordError(f"{where} must hold bytes and sha256", code="bad_field", field=where)
        _int(entry["bytes"], f"{where}.bytes")
        if type(entry["sha256"]) is not str or not _HEX.fullmatch(entry["sha256"]):
            raise RecordError(
                f"{where}.sha256 must be 64 lowercase hex digits", code="bad_field", field=where
            )


def _int(value: Any, name: str) -> None:
    if type(value) is not int or value < 0:
        raise RecordError(f"{name} must be an integer of at least 0", code="bad_field", field=name)


def check_manifest(public_key: Ed25519PublicKey, record: Mapping[str, Any]) -> None:
    """Check a manifest's fields and its signature by ``public_key``; RecordError if anything is wrong."""
    if type(record) is not dict:
        raise RecordError("the manifest must be a JSON object", code="malformed")
    if "signature" not in record:
        raise RecordError(
            "the manifest is not signed (no signature)", code="missing_field", field="signature"
        )
    body = {k: v for k, v in record.items() if k != "signature"}
    check_fields(body)
    check_signature(public_key, body, record["signature"], "manifest")
