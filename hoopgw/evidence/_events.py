"""One line of ``events.jsonl``: an audit event with what an examiner needs to re-check its hash.

``data`` is the event's JSON text exactly as stored (a string, not a parsed object): the hash covers
those bytes, and a re-encoding could differ in a float or an escape (docs/AUDIT.md). ``prev_hash`` and
``hash`` are hex; ``ts`` is the stored double, which JSON carries exactly.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from hoopgw.audit._chain import event_hash

#: The keys of an event line, in the order they are written.
KEYS = ("seq", "ts", "session_id", "kind", "data", "prompt_id", "prev_hash", "hash")
#: The columns read from ``events`` for a line, in the same order.
COLUMNS = ", ".join(KEYS)


class LineError(ValueError):
    """An event line is malformed or its hash does not match its contents."""


def text_of(value: bytes | str | None) -> str | None:
    """A column read as bytes, as text (invalid UTF-8 replaced: only a tampered row holds it)."""
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")  # its hash then fails, in the pack as in chain.json


def event_line(row: tuple[Any, ...]) -> bytes:
    """The JSON line (newline included) of an ``events`` row read with ``COLUMNS``."""
    seq, ts, session_id, kind, data, prompt_id, prev_hash, digest = row
    line = {
        "seq": seq,
        "ts": ts,
        "session_id": text_of(session_id),
        "kind": text_of(kind),
        "data": text_of(data),
        "prompt_id": text_of(prompt_id),
        "prev_hash": prev_hash.hex() if isinstance(prev_hash, bytes) else None,
        "hash": digest.hex() if isinstance(digest, bytes) else None,
    }
    return orjson.dumps(line) + b"\n"


def parse_line(raw: bytes) -> dict[str, Any]:
    """An event line read back and checked for shape; LineError saying what is wrong."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc}") from None
    if type(value) is not dict or sorted(value) != sorted(KEYS):
        raise LineError(f"an event line must be an object with exactly {', '.join(KEYS)}")
    if type(value["seq"]) is not int or type(value["ts"]) not in (int, float):
        raise LineError("seq must be an integer and ts a number")
    for name in ("kind", "data"):
        if type(value[name]) is not str:
            raise LineError(f"{name} must be a string")
    for name in ("session_id", "prompt_id"):
        if value[name] is not None and type(value[name]) is not str:
            raise LineError(f"{name} must be a string or null")
    for name in ("prev_hash", "hash"):
        text = value[name]
        if text is not None and (type(text) is not str or len(text) != 64):
            raise LineError(f"{name} must be 64 hex digits or null")
        try:
            value[name] = bytes.fromhex(text) if text is not None else None
        except ValueError:
            raise LineError(f"{name} must be 64 hex digits or null") from None
    return value


def line_hash(event: dict[str, Any]) -> bytes:
    """The recomputed hash of a parsed event line (its ``prev_hash`` as the link)."""
    sid, pid = event["session_id"], event["prompt_id"]
    try:
        return event_hash(
            event["seq"],
            float(event["ts"]),
            sid.encode() if sid is not None else None,
            event["kind"].encode(),
            event["data"].encode(),
            pid.encode() if pid is not None else None,
            event["prev_hash"],
        )
    except (struct.error, UnicodeEncodeError) as exc:
        raise LineError(f"cannot be hashed: {exc}") from None
