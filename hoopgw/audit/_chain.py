"""The audit hash chain: each event's SHA-256 links it to the one before; signed checkpoints seal it.

docs/AUDIT.md defines the encoding. :func:`event_hash` is what the writer computes as it inserts;
:func:`sign_checkpoint` makes the Ed25519-signed ``audit_checkpoint`` record; :func:`verify_chain`
streams a store's events in ``seq`` order, recomputes the chain, checks every checkpoint on the way
and stops at the first bad event, saying what is wrong with it.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoopgw.audit._schema import SCHEMA_VERSION
from hoopgw.errors import StoreError

#: The ``prev_hash`` of a chain's first event.
GENESIS = bytes(32)
CHECKPOINT = "audit_checkpoint"
CHECKPOINT_VERSION = 1
HASH_TAG = b"hoopgw-audit-event-v1\n"  # the encoding's domain and version
NULL_LENGTH = 0xFFFFFFFF  # the length that stands for SQL NULL
HASH_HEADER = struct.Struct(">22s32sqdIIII")  # tag, prev_hash, seq, ts, 4 lengths
_HASH_TEXT = re.compile(r"sha256:([0-9a-f]{64})")
_CHECKPOINT_FIELDS = ("events", "hash", "key_id", "previous", "seq", "ts", "type", "version")


def event_hash(
    seq: int,
    ts: float,
    session_id: bytes | None,
    kind: bytes,
    data: bytes,
    prompt_id: bytes | None,
    prev_hash: bytes,
) -> bytes:
    """SHA-256 of one event's canonical encoding (docs/AUDIT.md): a fixed header, then the texts.

    Texts are the UTF-8 bytes stored in the row (``data`` is the JSON text exactly as stored);
    raises TypeError or struct.error when a field has the wrong type (a tampered row).
    """
    sid_len = NULL_LENGTH if session_id is None else len(session_id)
    pid_len = NULL_LENGTH if prompt_id is None else len(prompt_id)
    header = HASH_HEADER.pack(HASH_TAG, prev_hash, seq, ts, sid_len, len(kind), len(data), pid_len)
    return hashlib.sha256(b"".join((header, session_id or b"", kind, data, prompt_id or b""))).digest()


def hash_text(digest: bytes) -> str:
    """``sha256:<64 hex>``, as in checkpoint records."""
    return "sha256:" + digest.hex()


# --- checkpoint records ----------------------------------------------------------------------------------


def sign_checkpoint(
    key: Ed25519PrivateKey, *, seq: int, digest: bytes, events: int, ts_ms: int, previous: int
) -> dict[str, Any]:
    """The signed ``audit_checkpoint`` record: the chain's head ``digest`` after event ``seq``."""
    # imported here, as in the other functions that sign or check: hoopgw.approvals (through
    # hoopgw.identity) imports hoopgw.audit for its tables
    from hoopgw.approvals._records import canonical
    from hoopgw.approvals._signing import b64url, key_id

    kid = key_id(key.public_key())
    body: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "type": CHECKPOINT,
        "seq": seq,
        "hash": hash_text(digest),
        "events": events,
        "ts": ts_ms,
        "key_id": kid,
        "previous": previous,
    }
    signed = dict(body)
    signed["signature"] = {"alg": "EdDSA", "kid": kid, "sig": b64url(key.sign(canonical(body)))}
    return signed


def check_checkpoint(public_key: Ed25519PublicKey, record: Mapping[str, Any]) -> None:
    """Check a checkpoint record's fields and its signature by ``public_key``; RecordError if wrong."""
    from hoopgw.approvals._records import RecordError, canonical
    from hoopgw.approvals._signing import b64url_decode, key_id

    if type(record) is not dict:
        raise RecordError("a record must be a JSON object", code="malformed")
    body = {k: v for k, v in record.items() if k != "signature"}
    if sorted(body) != list(_CHECKPOINT_FIELDS):
        missing = sorted(set(_CHECKPOINT_FIELDS) - set(body))
        code = "missing_field" if missing else "extra_field"
        names = missing or sorted(set(body) - set(_CHECKPOINT_FIELDS))
        raise RecordError(f"{code.replace('_', ' ')}: {', '.join(names)}", code=code)
    if body["version"] != CHECKPOINT_VERSION or type(body["version"]) is not int:
        raise RecordError(f"version {body['version']!r} is not supported", code="wrong_version")
    if body["type"] != CHECKPOINT:
        raise RecordError(f"type {body['type']!r} is not {CHECKPOINT!r}", code="unknown_type")
    for name in ("seq", "events", "ts", "previous"):
        if type(body[name]) is not int or body[name] < 0:
            raise RecordError(f"{name} must be an integer of at least 0", code="bad_field", field=name)
    if type(body["hash"]) is not str or not _HASH_TEXT.fullmatch(body["hash"]):
        raise RecordError("hash must be sha256: and 64 lowercase hex digits", code="bad_field", field="hash")
    signature = record.get("signature")
    if type(signature) is not dict or sorted(signature) != ["alg", "kid", "sig"]:
        raise RecordError("signature must hold alg, kid and sig", code="missing_field", field="signature")
    if signature["alg"] != "EdDSA":
        raise RecordError(f"signature.alg {signature['alg']!r} is not supported", code="unsupported_alg")
    expected = key_id(public_key)
    if signature["kid"] != expected or body["key_id"] != expected:
        raise RecordError(
            f"signed by an unknown key {signature['kid']!r} (expected {expected!r})", code="unknown_kid"
        )
    try:
        sig = b64url_decode(str(signature["sig"]))
        public_key.verify(sig, canonical(body))
    except (ValueError, InvalidSignature):
        raise RecordError(
            "bad signature: the checkpoint was changed after it was signed, or signed by another key",
            code="bad_signature",
            field="signature.sig",
        ) from None


# --- verification --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: ``seq`` of the first bad event; ``checkpoint``: the one at fault."""

    seq: int
    code: str
    message: str
    checkpoint: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"seq": self.seq, "code": self.code, "message": self.message, "checkpoint": self.checkpoint}


@dataclass(slots=True)
class Report:
    """What ``verify_chain`` found: counts, the last good checkpoint, and the first problem if any."""

    events: int = 0  # chained events verified by this run
    first_seq: int | None = None  # the first and last of them
    last_seq: int | None = None
    unchained: int = 0  # events from before the chain existed (no hash): not covered
    checkpoints: int = 0  # checkpoints verified (the anchor included)
    last_checkpoint: dict[str, Any] | None = None
    anchor: int | None = None  # verification started from the signed checkpoint at this seq
    problem: Problem | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return self.problem is None

    @property
    def unsigned(self) -> int:
        """Chained events after the last checkpoint, not sealed by a signature yet."""
        if self.last_seq is None or self.first_seq is None:
            return 0
        sealed = self.last_checkpoint["seq"] if self.last_checkpoint else self.first_seq - 1
        return max(0, self.last_seq - sealed)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.ok,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "unchained": self.unchained,
            "unsigned": self.unsigned,
            "checkpoints": self.checkpoints,
            "last_checkpoint": self.last_checkpoint,
            "anchor": self.anchor,
            "problem": self.problem.to_json() if self.problem else None,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


class _Found(Exception):  # control flow inside verify_chain, never escapes it
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_EVENTS_SQL = (
    "SELECT seq, ts, session_id, kind, data, prompt_id, prev_hash, hash FROM events"
    " WHERE seq > ? ORDER BY seq"
)
_CHECKPOINT_COLUMNS = "seq, ts, hash, events, record"
_NO_MORE = 1 << 62


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open an audit store read-only (verification never writes to the evidence); raises StoreError."""
    if not path.exists():
        raise StoreError(f"no audit store at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the audit store {path}: {exc}") from None
    if version != SCHEMA_VERSION:
        conn.close()
        why = (
            "newer than this hoopgw"
            if version > SCHEMA_VERSION
            else "older: start the gateway once to migrate"
        )
        raise StoreError(f"the audit store {path} has schema version {version}, {why} ({SCHEMA_VERSION})")
    return conn


def verify_chain(
    conn: sqlite3.Connection,
    public_key: Ed25519PublicKey,
    *,
    since_seq: int | None = None,
    since_ts: float | None = None,
) -> Report:
    """Recompute the chain of the store behind ``conn`` and check its checkpoints (docs/AUDIT.md).

    With ``since_seq`` (or ``since_ts``), start from the last checkpoint before that event (or
    written at or before that time), once its signature checks out. Reads one snapshot, streaming.
    """
    started = time.perf_counter()
    report = Report()
    conn.text_factory = bytes  # the stored UTF-8 as is: hashed without decoding, never undecodable
    conn.execute("BEGIN")
    try:
        _Verifier(conn, public_key, report).run(since_seq, since_ts)
    except _Found as found:
        report.problem = found.problem
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the audit store: {exc}") from None
    finally:
        conn.execute("ROLLBACK")
        conn.text_factory = str
    report.seconds = time.perf_counter() - started
    return report


class _Verifier:
    def __init__(self, conn: sqlite3.Connection, public_key: Ed25519PublicKey, report: Report) -> None:
        self.conn = conn
        self.key = public_key
        self.report = report
        self.prev_cp = 0  # seq of the last checkpoint verified (0: none, from genesis)
        self.count = 0  # chained events from genesis up to the current one, as checkpoints count them
        self.base = 0  # ... of which before this run's start (the anchor's count)

    def run(self, since_seq: int | None, since_ts: float | None) -> None:
        prev: bytes | None = None  # the running chain hash; None until the chain starts
        start = 0
        if since_seq is not None or since_ts is not None:
            where, arg = ("seq < ?", float(since_seq)) if since_seq is not None else ("ts <= ?", since_ts)
            row = self.conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE {where} ORDER BY seq DESC LIMIT 1",  # noqa: S608
                (arg,),
            ).fetchone()
            if row is not None:
                record = self._start_at(row)
                prev, start = _digest(record), record["seq"]
        self._run(prev, start)

    def _start_at(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """Verify from the signed checkpoint ``row`` on, its hash and count as the chain's state."""
        record = self._checkpoint_record(row)
        report = self.report
        self.prev_cp = report.anchor = record["seq"]
        self.base = self.count = record["events"]
        report.last_checkpoint = record
        report.checkpoints += 1
        return record

    def _run(self, prev: bytes | None, start: int) -> None:  # the hot loop: hashing inlined
        report = self.report
        checkpoints = self.conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq > ? ORDER BY seq",  # noqa: S608
            (start,),
        )
        cp = checkpoints.fetchone()
        cp_seq = cp[0] if cp is not None else _NO_MORE
        expect = start + 1
        count = self.count
        first = None if prev is None else expect
        sha256, pack, join = hashlib.sha256, HASH_HEADER.pack, b"".join
        tag, null = HASH_TAG, NULL_LENGTH
        try:
            for seq, ts, sid, kind, data, pid, stored_prev, stored in self.conn.execute(
                _EVENTS_SQL, (start,)
            ):
                if prev is None:  # before the chain: events written before it existed carry no hash
                    if stored is None and stored_prev is None:
                        report.unchained += 1
                        expect = seq + 1
                        if cp_seq <= seq:
                            raise _Found(
                                _cp_problem(cp_seq, "checkpoint_unchained", "names an unchained event")
                            )
                        continue
                    prev = self._chain_start(seq, stored_prev)
                    count, expect, first = self.count, seq, seq
                if seq != expect:
                    raise _Found(Problem(expect, "missing", _missing(expect, seq - 1) + " (deleted)"))
                if stored_prev != prev:
                    raise _Found(self._unlinked(seq, (ts, sid, kind, data, pid, stored_prev, stored), prev))
                try:
                    digest = sha256(
                        join(
                            (
                                pack(
                                    tag,
                                    prev,
                                    seq,
                                    ts,
                                    null if sid is None else len(sid),
                                    len(kind),
                                    len(data),
                                    null if pid is None else len(pid),
                                ),
                                sid or b"",
                                kind,
                                data,
                                pid or b"",
                            )
                        )
                    ).digest()
                except (TypeError, struct.error):
                    raise _Found(
                        Problem(seq, "malformed", f"event {seq} has a field of the wrong type")
                    ) from None
                if digest != stored:
                    raise _Found(
                        Problem(
                            seq, "changed", f"event {seq} was changed: its hash does not match its contents"
                        )
                    )
                count += 1
                prev = digest
                expect = seq + 1
                if cp_seq <= seq:
                    self.count = count
                    while cp is not None and cp[0] <= seq:
                        self._checkpoint(cp, seq, digest)
                        cp = checkpoints.fetchone()
                    cp_seq = cp[0] if cp is not None else _NO_MORE
        finally:
            self.count = count
            report.events = count - self.base
            if report.events:
                report.first_seq, report.last_seq = first, expect - 1
        if cp is not None:
            self._beyond_end(cp)

    def _chain_start(self, seq: int, stored_prev: bytes | None) -> bytes:
        """Where the chain begins, reading from the start: genesis, or a checkpoint at a purge cut."""
        if stored_prev == GENESIS:
            return GENESIS
        report = self.report
        if report.unchained:
            first = seq - report.unchained
            raise _Found(
                Problem(
                    first,
                    "unchained",
                    f"events {first}..{seq - 1} carry no hash, yet event {seq} links to an earlier event:"
                    " their hashes were removed",
                )
            )
        row = self.conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq = ?",  # noqa: S608
            (seq - 1,),
        ).fetchone()
        if row is None or stored_prev is None or row[2] != stored_prev:
            # the first checkpoint's count says where the chain began (a hint: not verified yet)
            hint = self.conn.execute("SELECT seq, events FROM checkpoints ORDER BY seq LIMIT 1").fetchone()
            first = seq - 1
            if hint is not None and type(hint[1]) is int and 1 <= hint[0] - hint[1] + 1 < first:
                first = hint[0] - hint[1] + 1
            raise _Found(
                Problem(
                    max(first, 1),
                    "missing",
                    f"{_missing(max(first, 1), seq - 1)} (deleted): event {seq} links to an earlier event",
                )
            )
        self._start_at(row)
        report.notes.append(
            f"events before seq {seq} are not in the store (purged): verified from the signed checkpoint"
            f" at seq {seq - 1}"
        )
        return stored_prev

    def _unlinked(self, seq: int, row: tuple[Any, ...], prev: bytes) -> Problem:
        """Say why event ``seq`` does not link to the verified event before it."""
        ts, sid, kind, data, pid, stored_prev, stored = row
        if stored_prev is None or stored is None:
            return Problem(seq, "unchained", f"event {seq} carries no hash (the chain was cut there)")
        try:
            consistent = event_hash(seq, ts, sid, kind, data, pid, stored_prev) == stored
        except (TypeError, struct.error):
            consistent = False
        found = self.conn.execute(
            "SELECT seq FROM events WHERE hash = ? ORDER BY seq LIMIT 1", (stored_prev,)
        ).fetchone()
        if found is None:
            if consistent:
                # the row itself is intact and links to a hash no event has: the one before was rewritten
                return Problem(
                    seq - 1,
                    "changed",
                    f"event {seq - 1} was changed and its hash recomputed: event {seq} links to the original",
                )
            return Problem(
                seq,
                "unlinked",
                f"event {seq} does not link to event {seq - 1}: events were deleted before it, or it changed",
            )
        (linked,) = found
        if linked < seq - 1:
            what = (
                f"event {linked + 1} is" if linked + 1 == seq - 1 else f"events {linked + 1}..{seq - 1} are"
            )
            return Problem(
                linked + 1,
                "inserted",
                f"{what} not in the chain: inserted (event {seq} links to event {linked})",
            )
        return Problem(
            seq, "reordered", f"event {seq} is out of order: it follows event {linked} in the chain"
        )

    def _checkpoint_record(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """The verified record of a checkpoint row whose columns agree with it (else _Found)."""
        from hoopgw.approvals._records import RecordError, load_records

        seq, ts, digest, events, raw = row
        try:
            if type(raw) is not bytes:
                raise RecordError("the record is not text", code="malformed")  # noqa: TRY301
            [record] = load_records(raw)
            check_checkpoint(self.key, record)
        except (RecordError, ValueError) as exc:
            raise _Found(_cp_problem(seq, "checkpoint_invalid", f"is not valid: {exc}")) from None
        if (
            record["seq"] != seq
            or type(digest) is not bytes
            or hash_text(digest) != record["hash"]
            or record["events"] != events
            or type(ts) is not float
            or round(ts * 1000) != record["ts"]
        ):
            raise _Found(_cp_problem(seq, "checkpoint_changed", "differs from its signed record"))
        return record

    def _checkpoint(self, row: tuple[Any, ...], seq: int, digest: bytes) -> None:
        """Check the checkpoint ``row``, at or before event ``seq`` (the chain's head ``digest``)."""
        cp_seq = row[0]
        if cp_seq != seq:  # it names an event the chain never held (before the chain started)
            raise _Found(_cp_problem(cp_seq, "checkpoint_unchained", "names an unchained event"))
        record = self._checkpoint_record(row)
        if record["previous"] != self.prev_cp:
            if record["previous"] > self.prev_cp:
                raise _Found(
                    _cp_problem(
                        record["previous"],
                        "checkpoint_missing",
                        f"was deleted (the checkpoint at seq {cp_seq} names it as its previous)",
                    )
                )
            raise _Found(
                _cp_problem(
                    cp_seq, "checkpoint_changed", f"names checkpoint {record['previous']} as previous"
                )
            )
        if record["hash"] != hash_text(digest):
            first = self.prev_cp + 1
            raise _Found(
                Problem(
                    first,
                    "rewritten",
                    f"the chain at seq {cp_seq} differs from its signed checkpoint: events in"
                    f" {first}..{cp_seq} were changed and the chain recomputed",
                    cp_seq,
                )
            )
        if record["events"] != self.count:
            raise _Found(
                _cp_problem(
                    cp_seq, "checkpoint_count", f"signs {record['events']} events, the chain has {self.count}"
                )
            )
        self.prev_cp = cp_seq
        self.report.checkpoints += 1
        self.report.last_checkpoint = record

    def _beyond_end(self, row: tuple[Any, ...]) -> None:
        """A checkpoint after the last event: the events it signs were deleted (or it is forged)."""
        record = self._checkpoint_record(row)
        last = self.report.last_seq if self.report.last_seq is not None else self.prev_cp
        first = max(last, self.prev_cp) + 1
        raise _Found(
            Problem(
                first,
                "truncated",
                f"{_missing(first, record['seq'])}: deleted (the checkpoint at {record['seq']} signs them)",
                record["seq"],
            )
        )


def _digest(record: Mapping[str, Any]) -> bytes:
    return bytes.fromhex(str(record["hash"])[7:])


def _cp_problem(seq: int, code: str, what: str) -> Problem:
    return Problem(seq, code, f"the checkpoint at seq {seq} {what}", seq)


def _missing(first: int, last: int) -> str:
    return f"event {first} is missing" if first == last else f"events {first}..{last} are missing"


def record_json(record: Mapping[str, Any]) -> str:
    """A checkpoint record as stored: canonical JSON, signature included."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
