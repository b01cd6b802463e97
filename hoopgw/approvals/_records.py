"""Signed approval records: canonical JSON, a strict schema per record type, Ed25519 signatures.

A record is a plain dict. ``sign_record`` checks it against its type's schema and adds
``signature = {"alg": "EdDSA", "kid": KEY_ID, "sig": BASE64URL}`` over ``canonical(record without
signature)``; ``verify_record`` checks the schema, the key id and the signature, and raises
:class:`RecordError` naming the first thing that is wrong. docs/APPROVALS.md describes the format.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoopgw.approvals._signing import b64url, b64url_decode, key_id
from hoopgw.errors import HoopError

RECORD_VERSION = 1
REQUEST = "approval_request"
DECISION = "approval_decision"
GRANT = "access_grant"
ALG = "EdDSA"
#: Integers must lie within ±(2**53 - 1), so every JSON implementation reads them exactly.
MAX_SAFE_INT = 2**53 - 1
_STATEMENT_DIGEST = re.compile(r"hmac-sha256:[0-9a-f]{64}")
_REQUEST_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RecordError(HoopError):
    """A record is malformed, does not match its schema, or its signature does not verify.

    ``code`` is one of: ``malformed``, ``not_canonical``, ``wrong_version``, ``unknown_type``,
    ``missing_field``, ``extra_field``, ``bad_field``, ``unsupported_alg``, ``unknown_kid``,
    ``bad_signature``, ``unbound``; ``field`` is the dotted path of the field at fault, if any.
    """

    def __init__(self, message: str, *, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


# --- canonical encoding -------------------------------------------------------------------------------


def canonical(record: Mapping[str, Any]) -> bytes:
    """The canonical encoding: UTF-8 JSON, keys sorted, no whitespace (RFC 8785 for what records hold).

    Only dict (str keys), list, str, int (within ±(2**53 - 1)), bool and None are allowed: floats
    (NaN and infinities above all, which orjson would turn into ``null``) raise ``not_canonical``.
    """
    _check_value(record, "")
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a string
        raise RecordError(f"cannot be encoded canonically: {exc}", code="not_canonical") from None


def _check_value(value: Any, path: str) -> None:
    kind = type(value)
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise RecordError(f"{path or 'record'}: key {k!r} is not a string", code="not_canonical")
            _check_value(v, f"{path}.{k}" if path else k)
    elif kind is list:
        for i, v in enumerate(value):
            _check_value(v, f"{path}[{i}]")
    elif kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise RecordError(f"{path}: integer out of range ±(2**53 - 1)", code="not_canonical", field=path)
    elif kind is float:
        raise RecordError(
            f"{path}: {value!r} is a float; records hold integers only", code="not_canonical", field=path
        )
    elif kind not in (str, bool, type(None)):
        raise RecordError(
            f"{path}: a {kind.__name__} has no canonical JSON form", code="not_canonical", field=path
        )


def record_digest(record: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical encoding of the whole (signed) record."""
    return "sha256:" + hashlib.sha256(canonical(record)).hexdigest()


# --- schema --------------------------------------------------------------------------------------------

Check = Callable[[Any, str], None]


def _bad(path: str, reason: str) -> RecordError:
    return RecordError(f"{path}: {reason}", code="bad_field", field=path)


def _text(value: Any, path: str) -> None:
    if type(value) is not str or not value:
        raise _bad(path, "must be a non-empty string")


def _any_text(value: Any, path: str) -> None:
    if type(value) is not str:
        raise _bad(path, "must be a string")


def _optional_text(value: Any, path: str) -> None:
    if value is not None and (type(value) is not str or not value):
        raise _bad(path, "must be a non-empty string or null")


def _positive(value: Any, path: str) -> None:
    if type(value) is not int or not 1 <= value <= MAX_SAFE_INT:
        raise _bad(path, "must be an integer of at least 1")


def _time(value: Any, path: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INT:
        raise _bad(path, "must be a time: an integer of milliseconds since 1970-01-01T00:00:00Z")


def _pattern(regex: re.Pattern[str], what: str) -> Check:
    def check(value: Any, path: str) -> None:
        if type(value) is not str or not regex.fullmatch(value):
            raise _bad(path, f"must be {what}")

    return check


def _one_of(*choices: str) -> Check:
    def check(value: Any, path: str) -> None:
        if value not in choices or type(value) is not str:
            raise _bad(path, "must be one of " + ", ".join(repr(c) for c in choices))

    return check


def _list_of(item: Check, *, min_items: int = 0) -> Check:
    def check(value: Any, path: str) -> None:
        if type(value) is not list:
            raise _bad(path, "must be an array")
        if len(value) < min_items:
            raise _bad(path, f"must hold at least {min_items} item{'s' if min_items > 1 else ''}")
        for i, v in enumerate(value):
            item(v, f"{path}[{i}]")

    return check


def _param(value: Any, path: str) -> None:
    if value is not None and type(value) is not str:
        raise _bad(path, "must be a string (the masked value) or null")


def _fields(value: Any, path: str, schema: Mapping[str, Check]) -> None:
    """``value`` is an object with exactly the keys of ``schema``, each passing its check."""
    if type(value) is not dict:
        raise _bad(path or "record", "must be an object")
    for name in schema:
        if name not in value:
            where = f"{path}.{name}" if path else name
            raise RecordError(f"missing field {where}", code="missing_field", field=where)
    for name in value:
        if name not in schema:
            where = f"{path}.{name}" if path else name
            raise RecordError(f"unexpected field {where}", code="extra_field", field=where)
    for name, check in schema.items():
        check(value[name], f"{path}.{name}" if path else name)


def _object(schema: Mapping[str, Check]) -> Check:
    def check(value: Any, path: str) -> None:
        _fields(value, path, schema)

    return check


_COVERS: dict[str, dict[str, Check]] = {
    # the approval lets through this exact statement (text and parameters) once
    "statement": {"kind": _text},
    # the approval lets through statements of the same shape (normalized text) for duration_ms
    "shape": {
        "kind": _text,
        "duration_ms": _positive,
        "shape_digest": _pattern(_STATEMENT_DIGEST, "hmac-sha256: and 64 lowercase hex digits"),
    },
}


def _covers(value: Any, path: str) -> None:
    kind = value.get("kind") if type(value) is dict else None
    if type(kind) is not str or kind not in _COVERS:
        if type(value) is dict and "kind" not in value:
            raise RecordError(f"missing field {path}.kind", code="missing_field", field=f"{path}.kind")
        raise _bad(f"{path}.kind" if type(value) is dict else path, "must be 'statement' or 'shape'")
    _fields(value, path, _COVERS[kind])


_REQUESTER = _object({"subject": _text, "auth": _text, "groups": _list_of(_text)})
_APPROVERS = _list_of(_text, min_items=1)
_STATEMENT = _pattern(_STATEMENT_DIGEST, "hmac-sha256: and 64 lowercase hex digits")

#: The fields of each record type, besides ``version``, ``type`` and ``signature``.
SCHEMAS: dict[str, dict[str, Check]] = {
    REQUEST: {
        "id": _text,
        "requester": _REQUESTER,
        "connection": _text,
        "statement": _any_text,
        "statement_digest": _STATEMENT,
        "params_masked": _list_of(_param),
        "more_params_masked": _list_of(_list_of(_param)),
        "prompt_id": _optional_text,
        "rule": _text,
        "approvers": _APPROVERS,
        "approvals_required": _positive,
        "created_at": _time,
        "expires_at": _time,
        "covers": _covers,
    },
    DECISION: {
        "id": _text,
        "request_id": _text,
        "request_digest": _pattern(_REQUEST_DIGEST, "sha256: and 64 lowercase hex digits"),
        "approver": _object({"subject": _text, "auth": _text, "groups": _list_of(_text)}),
        "decision": _one_of("approve", "deny"),
        "reason": _optional_text,
        "decided_at": _time,
    },
    GRANT: {
        "id": _text,
        "requester": _REQUESTER,
        "connection": _text,
        "reason": _text,
        "duration_ms": _positive,
        "rule": _text,
        "approvers": _APPROVERS,
        "approvals_required": _positive,
        "created_at": _time,
        "expires_at": _time,
    },
}
_SIGNATURE = {"alg": _any_text, "kid": _any_text, "sig": _any_text}


def check_schema(body: Mapping[str, Any]) -> None:
    """Check an unsigned record (no ``signature`` key) against the schema of its type."""
    if type(body) is not dict:
        raise RecordError("a record must be a JSON object", code="malformed")
    version = body.get("version")
    if "version" not in body:
        raise RecordError("missing field version", code="missing_field", field="version")
    if type(version) is not int or version != RECORD_VERSION:
        raise RecordError(
            f"version {version!r} is not supported (this hoopgw reads version {RECORD_VERSION})",
            code="wrong_version",
            field="version",
        )
    if "type" not in body:
        raise RecordError("missing field type", code="missing_field", field="type")
    kind = body["type"]
    if type(kind) is not str or kind not in SCHEMAS:
        raise RecordError(
            f"type {kind!r} is not one of {', '.join(SCHEMAS)}", code="unknown_type", field="type"
        )
    _fields(body, "", {"version": _positive, "type": _text, **SCHEMAS[kind]})
    if kind in (REQUEST, GRANT) and body["expires_at"] <= body["created_at"]:
        raise _bad("expires_at", "must be later than created_at")
    if kind == DECISION and body["decision"] == "deny" and not body["reason"]:
        raise _bad("reason", "a denial must give a reason")


# --- signing and verifying -----------------------------------------------------------------------------


def sign_record(key: Ed25519PrivateKey, record: Mapping[str, Any]) -> dict[str, Any]:
    """A signed copy of ``record`` (which must match its schema and carry no ``signature`` yet)."""
    if "signature" in record:
        raise RecordError("the record is already signed", code="malformed", field="signature")
    check_schema(record)
    body = canonical(record)
    signed: dict[str, Any] = orjson.loads(body)  # a deep copy of exactly what was signed
    signed["signature"] = {"alg": ALG, "kid": key_id(key.public_key()), "sig": b64url(key.sign(body))}
    return signed


def verify_record(public_key: Ed25519PublicKey, record: Mapping[str, Any]) -> None:
    """Check ``record``'s schema and its signature by ``public_key``; RecordError if anything is wrong."""
    if type(record) is not dict:
        raise RecordError("a record must be a JSON object", code="malformed")
    if "signature" not in record:
        raise RecordError(
            "missing field signature (the record is not signed)", code="missing_field", field="signature"
        )
    signature = record["signature"]
    _fields(signature, "signature", _SIGNATURE)
    if signature["alg"] != ALG:
        raise RecordError(
            f"signature.alg {signature['alg']!r} is not supported (only {ALG!r})",
            code="unsupported_alg",
            field="signature.alg",
        )
    body = {k: v for k, v in record.items() if k != "signature"}
    check_schema(body)
    expected = key_id(public_key)
    if signature["kid"] != expected:
        raise RecordError(
            f"signed by an unknown key: signature.kid {signature['kid']!r} is not {expected!r}",
            code="unknown_kid",
            field="signature.kid",
        )
    try:
        sig = b64url_decode(signature["sig"])
    except ValueError as exc:
        raise RecordError(f"signature.sig: {exc}", code="bad_signature", field="signature.sig") from None
    if len(sig) != 64:
        raise RecordError(
            f"signature.sig: an Ed25519 signature has 64 bytes, not {len(sig)}",
            code="bad_signature",
            field="signature.sig",
        )
    try:
        public_key.verify(sig, canonical(body))
    except InvalidSignature:
        raise RecordError(
            "bad signature: the record was changed after it was signed, or signed by another key",
            code="bad_signature",
            field="signature.sig",
        ) from None


def check_binding(request: Mapping[str, Any], decision: Mapping[str, Any]) -> None:
    """Check that a verified decision was made on exactly this verified request; RecordError ``unbound``."""
    if decision["request_id"] != request["id"]:
        raise RecordError(
            f"decision {decision['id']} is for request {decision['request_id']}, not {request['id']}",
            code="unbound",
            field="request_id",
        )
    if decision["request_digest"] != record_digest(request):
        raise RecordError(
            f"decision {decision['id']}: request_digest does not match request {request['id']}"
            " (the decision was made on a different record)",
            code="unbound",
            field="request_digest",
        )
    # the request's life is [created_at, expires_at): a decision at its expiry expires it instead
    if not request["created_at"] <= decision["decided_at"] < request["expires_at"]:
        raise RecordError(
            f"decision {decision['id']}: decided_at lies outside the life of request {request['id']}",
            code="unbound",
            field="decided_at",
        )
    if decision["approver"]["subject"] == request["requester"]["subject"]:
        raise RecordError(
            f"decision {decision['id']}: the requester decided their own request {request['id']}",
            code="unbound",
            field="approver.subject",
        )


# --- reading files -------------------------------------------------------------------------------------


def load_records(data: bytes) -> list[dict[str, Any]]:
    """Parse a file holding one record (a JSON object) or a non-empty JSON array of records.

    Stricter than JSON parsers usually are: duplicate keys, NaN/Infinity and fractions are refused, so
    what a person reads in the file is what was verified.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 (byte {exc.start})", code="malformed") from None
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_no_float
        )
    except json.JSONDecodeError as exc:
        raise RecordError(f"not JSON: {exc}", code="malformed") from None
    if type(value) is dict:
        return [value]
    if type(value) is not list or not value:
        raise RecordError(
            "expected a record (a JSON object) or a non-empty array of records", code="malformed"
        )
    for i, item in enumerate(value):
        if type(item) is not dict:
            raise RecordError(f"item {i + 1} of the array is not a JSON object", code="malformed")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for k, v in pairs:
        if k in result:
            raise RecordError(f"duplicate key {k!r} in an object", code="malformed", field=k)
        result[k] = v
    return result


def _no_constant(name: str) -> Any:
    raise RecordError(f"{name} is not a JSON number", code="malformed")


def _no_float(text: str) -> Any:
    raise RecordError(f"{text} is not an integer; records hold integers only", code="malformed")
