"""The audit hash chain: each event's SHA-256 links it to the one before; signed checkpoints seal it.

docs/AUDIT.md defines the encoding. :func:`event_hash` is what the writer computes as it inserts;
:func:`sign_checkpoint` makes the Ed25519-signed ``audit_checkpoint`` record; :func:`verify_chain`
streams a store's events in ``seq`` order, recomputes the chain, checks every checkpoint on the way
and stops at the first bad event, saying what is wrong with it.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoopgw.audit._db import DB_ERRORS, Db, Store, as_store
from hoopgw.errors import StoreError

#: The ``prev_hash`` of a chain's first event.
GENESIS = bytes(32)
CHECKPOINT = "audit_checkpoint"
CHECKPOINT_VERSION = 1
PURGE = "audit_purge"  # the record type of a purge, and the kind of the event that reports one
PURGE_VERSION = 1
PURGED_TAG = b"hoopgw-audit-purged-v1\n"  # the domain of a purge record's ``rows`` digest
#: A tombstone's kept columns in a purge record's ``rows`` digest: seq, ts, 3 lengths, hash.
PURGED_HEADER = struct.Struct(">qdIII32s")
_MARKER = re.compile(rb'\{"purged":[0-9]+\}')  # what a purged event's data reads
HASH_TAG = b"hoopgw-audit-event-v1\n"  # the encoding's domain and version
NULL_LENGTH = 0xFFFFFFFF  # the length that stands for SQL NULL
HASH_HEADER = struct.Struct(">22s32sqdIIII")  # tag, prev_hash, seq, ts, 4 lengths
_HASH_TEXT = re.compile(r"sha256:([0-9a-f]{64})")
_CHECKPOINT_FIELDS = ("events", "hash", "key_id", "previous", "seq", "ts", "type", "version")
_PURGE_FIELDS = (
    "cut", "deleted", "held", "id", "key_id", "kinds", "previous", "retention", "rows", "sealed",
    "tombstoned", "ts", "type", "version",
)  # fmt: skip


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


def purge_marker(purge_id: int) -> bytes:
    """What a tombstoned event's ``data`` reads once purge ``purge_id`` erased it (valid JSON)."""
    return b'{"purged":%d}' % purge_id


def purged_row(seq: int, ts: float, session_id: bytes | None, kind: bytes, prompt_id: bytes | None,
               digest: bytes) -> bytes:  # fmt: skip
    """A tombstone's kept columns as a purge record's ``rows`` digest covers them (docs/AUDIT.md)."""
    sid_len = NULL_LENGTH if session_id is None else len(session_id)
    pid_len = NULL_LENGTH if prompt_id is None else len(prompt_id)
    header = PURGED_HEADER.pack(seq, ts, sid_len, len(kind), pid_len, digest)
    return b"".join((header, session_id or b"", kind, prompt_id or b""))


# --- checkpoint records ----------------------------------------------------------------------------------


def sign_checkpoint(
    key: Ed25519PrivateKey, *, seq: int, digest: bytes, events: int, ts_ms: int, previous: int
) -> dict[str, Any]:
    """The signed ``audit_checkpoint`` record: the chain's head ``digest`` after event ``seq``."""
    # imported here, as in the other functions that sign or check: hoopgw.approvals (through
    # hoopgw.identity) imports hoopgw.audit for its tables
    from hoopgw.approvals._signing import key_id

    body: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "type": CHECKPOINT,
        "seq": seq,
        "hash": hash_text(digest),
        "events": events,
        "ts": ts_ms,
        "key_id": key_id(key.public_key()),
        "previous": previous,
    }
    return sign_body(key, body)


def sign_body(key: Ed25519PrivateKey, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` plus ``signature``: ``{"alg": "EdDSA", "kid", "sig"}`` over its canonical encoding
    (checkpoints, purge records, evidence manifests; each body names its own ``type``)."""
    from hoopgw.approvals._records import canonical
    from hoopgw.approvals._signing import b64url, key_id

    sig = b64url(key.sign(canonical(body)))
    return {**body, "signature": {"alg": "EdDSA", "kid": key_id(key.public_key()), "sig": sig}}


def check_signature(public_key: Ed25519PublicKey, body: Mapping[str, Any], signature: Any, what: str) -> None:
    """Check a ``signature`` made by :func:`sign_body` over ``body`` (whose ``key_id`` must be the
    key's too); RecordError naming ``what`` was signed if it does not hold."""
    from hoopgw.approvals._records import RecordError, canonical
    from hoopgw.approvals._signing import b64url_decode, key_id

    if type(signature) is not dict or sorted(signature) != ["alg", "kid", "sig"]:
        raise RecordError("signature must hold alg, kid and sig", code="missing_field", field="signature")
    if signature["alg"] != "EdDSA":
        raise RecordError(f"signature.alg {signature['alg']!r} is not supported", code="unsupported_alg")
    expected = key_id(public_key)
    if signature["kid"] != expected or body.get("key_id") != expected:
        raise RecordError(
            f"signed by an unknown key {signature['kid']!r} (expected {expected!r})", code="unknown_kid"
        )
    try:
        public_key.verify(b64url_decode(str(signature["sig"])), canonical(body))
    except (ValueError, InvalidSignature):
        raise RecordError(
            f"bad signature: the {what} was changed after it was signed, or signed by another key",
            code="bad_signature",
            field="signature.sig",
        ) from None


def check_checkpoint(public_key: Ed25519PublicKey, record: Mapping[str, Any]) -> None:
    """Check a checkpoint record's fields and its signature by ``public_key``; RecordError if wrong."""
    _check_signed(public_key, record, CHECKPOINT, CHECKPOINT_VERSION, _CHECKPOINT_FIELDS, _checkpoint_fields)


def _checkpoint_fields(body: Mapping[str, Any]) -> None:
    for name in ("seq", "events", "ts", "previous"):
        _count(body, name)
    _hash_field(body, "hash")


def sign_purge(key: Ed25519PrivateKey, body: Mapping[str, Any]) -> dict[str, Any]:
    """The signed ``audit_purge`` record of ``body`` (every field of docs/AUDIT.md but type,
    version, key_id and signature, which this adds)."""
    from hoopgw.approvals._signing import key_id

    kid = key_id(key.public_key())
    full: dict[str, Any] = {**body, "version": PURGE_VERSION, "type": PURGE, "key_id": kid}
    check = {**full, "signature": {"alg": "EdDSA", "kid": kid, "sig": ""}}
    _check_body(check, PURGE, PURGE_VERSION, _PURGE_FIELDS, _purge_fields)  # never sign a malformed one
    return sign_body(key, full)


def check_purge(public_key: Ed25519PublicKey, record: Mapping[str, Any]) -> None:
    """Check a purge record's fields and its signature by ``public_key``; RecordError if wrong."""
    _check_signed(public_key, record, PURGE, PURGE_VERSION, _PURGE_FIELDS, _purge_fields)


def _purge_fields(body: Mapping[str, Any]) -> None:
    from hoopgw.approvals._records import RecordError

    for name in ("cut", "deleted", "held", "previous", "sealed", "ts"):
        _count(body, name)
    if type(body["id"]) is not int or body["id"] < 1:
        raise RecordError("id must be an integer of at least 1", code="bad_field", field="id")
    _hash_field(body, "rows")
    for name, low in (("kinds", 0), ("retention", 1)):
        value = body[name]
        if type(value) is not dict or not all(type(v) is int and v >= low for v in value.values()):
            raise RecordError(f"{name} must map names to integers", code="bad_field", field=name)
    ranges, last = body["tombstoned"], 0
    if type(ranges) is not list:
        raise RecordError("tombstoned must be a list", code="bad_field", field="tombstoned")
    for item in ranges:
        if (
            type(item) is not list
            or len(item) != 2
            or not all(type(v) is int for v in item)
            or not last < item[0] <= item[1]
        ):
            raise RecordError(
                "tombstoned must hold increasing [first, last] seq ranges",
                code="bad_field",
                field="tombstoned",
            )
        last = item[1]


def _count(body: Mapping[str, Any], name: str) -> None:
    from hoopgw.approvals._records import RecordError

    if type(body[name]) is not int or body[name] < 0:
        raise RecordError(f"{name} must be an integer of at least 0", code="bad_field", field=name)


def _hash_field(body: Mapping[str, Any], name: str) -> None:
    from hoopgw.approvals._records import RecordError

    if type(body[name]) is not str or not _HASH_TEXT.fullmatch(body[name]):
        raise RecordError(f"{name} must be sha256: and 64 lowercase hex digits", code="bad_field", field=name)


def _check_body(
    record: Mapping[str, Any],
    kind: str,
    version: int,
    fields: tuple[str, ...],
    check_fields: Callable[[Mapping[str, Any]], None],
) -> dict[str, Any]:
    """The record's body (all but ``signature``) once its type, version and fields check out."""
    from hoopgw.approvals._records import RecordError

    if type(record) is not dict:
        raise RecordError("a record must be a JSON object", code="malformed")
    body = {k: v for k, v in record.items() if k != "signature"}
    if sorted(body) != list(fields):
        missing = sorted(set(fields) - set(body))
        code = "missing_field" if missing else "extra_field"
        names = missing or sorted(set(body) - set(fields))
        raise RecordError(f"{code.replace('_', ' ')}: {', '.join(names)}", code=code)
    if body["version"] != version or type(body["version"]) is not int:
        raise RecordError(f"version {body['version']!r} is not supported", code="wrong_version")
    if body["type"] != kind:
        raise RecordError(f"type {body['type']!r} is not {kind!r}", code="unknown_type")
    check_fields(body)
    return body


def _check_signed(
    public_key: Ed25519PublicKey,
    record: Mapping[str, Any],
    kind: str,
    version: int,
    fields: tuple[str, ...],
    check_fields: Callable[[Mapping[str, Any]], None],
) -> None:
    body = _check_body(record, kind, version, fields, check_fields)
    what = "checkpoint" if kind == CHECKPOINT else "record"
    check_signature(public_key, body, record.get("signature"), what)


# --- verification --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: ``seq`` of the first bad event (0: none in particular);
    ``checkpoint`` / ``purge``: the checkpoint (its seq) or purge record (its id) at fault."""

    seq: int
    code: str
    message: str
    checkpoint: int | None = None
    purge: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "seq": self.seq,
            "code": self.code,
            "message": self.message,
            "checkpoint": self.checkpoint,
            "purge": self.purge,
        }


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
    purges: int = 0  # signed purge records verified
    purged_to: int = 0  # events up to this seq were purged (deleted) ...
    purged_by: dict[str, Any] | None = None  # ... by this purge record
    tombstones: int = 0  # events whose data a signed purge erased, among those verified
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
            "purges": self.purges,
            "purged_to": self.purged_to,
            "purged_by": self.purged_by,
            "tombstones": self.tombstones,
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
    " WHERE seq > ? AND seq <= ? ORDER BY seq"
)
_CHECKPOINT_COLUMNS = "seq, ts, hash, events, record"
_NO_MORE = 1 << 62
_PURGE_KIND = PURGE.encode()


def open_readonly(path: Path | Store) -> Db:
    """Open an audit store read-only (verification never writes to the evidence): the SQLite file
    ``path`` (or the one in directory ``path``), or a :class:`Store`; raises StoreError."""
    return as_store(path).open_readonly()


def verify_chain(
    conn: Db,
    public_key: Ed25519PublicKey,
    *,
    since_seq: int | None = None,
    since_ts: float | None = None,
    until_seq: int | None = None,
) -> Report:
    """Recompute the chain of the store behind ``conn`` and check its checkpoints (docs/AUDIT.md).

    With ``since_seq`` (or ``since_ts``), start from the last checkpoint before that event (or
    written at or before that time), once its signature checks out; with ``until_seq``, stop at
    the first checkpoint at or after that event (what a purge checks before it erases anything).
    A purged store starts from the checkpoint its signed purge records cut the chain at. Reads one
    snapshot, streaming.
    """
    started = time.perf_counter()
    report = Report()
    conn.text_factory = bytes  # the stored UTF-8 as is: hashed without decoding, never undecodable
    conn.begin_read()
    try:
        _Verifier(conn, public_key, report).run(since_seq, since_ts, until_seq)
    except _Found as found:
        report.problem = found.problem
    except DB_ERRORS as exc:
        raise StoreError(f"cannot read the audit store: {conn.store.scrub(str(exc))}") from None
    finally:
        conn.execute("ROLLBACK")
        conn.text_factory = str
    report.seconds = time.perf_counter() - started
    return report


@dataclass(slots=True)
class _Purge:
    """A verified purge record, as verification uses it."""

    record: dict[str, Any]
    first: int  # its first and last tombstoned seq (0 when it tombstoned none)
    last: int
    rows: Any = None  # the running digest of its tombstones met so far


class _Verifier:
    def __init__(self, conn: Db, public_key: Ed25519PublicKey, report: Report) -> None:
        self.conn = conn
        self.key = public_key
        self.report = report
        self.prev_cp = 0  # seq of the last checkpoint verified (0: none, from genesis)
        self.count = 0  # chained events from genesis up to the current one, as checkpoints count them
        self.base = 0  # ... of which before this run's start (the anchor's count)
        self.purges: dict[int, _Purge] = {}  # verified purge records by id
        self.cut = 0  # the chain's start, as the signed purge records say: events up to it purged
        self.sealed = 0  # the last checkpoint a purge saw
        self.tombs: list[tuple[int, int, int]] = []  # tombstoned (first, last, purge id), in seq order
        self.ti = 0  # the next of them
        self.tomb_at = _NO_MORE  # the next seq that may be a tombstone

    def run(self, since_seq: int | None, since_ts: float | None, until_seq: int | None) -> None:
        self._load_purges()
        prev: bytes | None = None  # the running chain hash; None until the chain starts
        start = 0
        row = None
        if since_seq is not None or since_ts is not None:
            where, arg = ("seq < ?", float(since_seq)) if since_seq is not None else ("ts <= ?", since_ts)
            row = self.conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE {where} ORDER BY seq DESC LIMIT 1",  # noqa: S608
                (arg,),
            ).fetchone()
            if row is not None and row[0] <= self.cut:
                row = None  # at or before the purge cut: start from the cut
        if row is not None:
            record = self._start_at(row)
            prev, start = _digest(record), record["seq"]
        elif self.cut:
            prev, start = self._start_at_cut(), self.cut
        stop = _NO_MORE
        if until_seq is not None:
            after = self.conn.execute(
                "SELECT seq FROM checkpoints WHERE seq >= ? ORDER BY seq LIMIT 1", (until_seq,)
            ).fetchone()
            stop = after[0] if after is not None else _NO_MORE
        self._run(prev, start, stop)
        if stop == _NO_MORE:
            self._after_end()

    def _start_at(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """Verify from the signed checkpoint ``row`` on, its hash and count as the chain's state."""
        record = self._checkpoint_record(row)
        report = self.report
        self.prev_cp = report.anchor = record["seq"]
        self.base = self.count = record["events"]
        report.last_checkpoint = record
        report.checkpoints += 1
        return record

    def _start_at_cut(self) -> bytes:
        """A purged store: start from the checkpoint at the cut the signed purge records name."""
        cut = self.cut
        by = next(p.record for p in self.purges.values() if p.record["cut"] == cut)
        row = self.conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq = ?",  # noqa: S608
            (cut,),
        ).fetchone()
        if row is None:
            raise _Found(
                Problem(
                    cut,
                    "checkpoint_missing",
                    f"the checkpoint at seq {cut}, where purge {by['id']} cut the chain, was deleted",
                    cut,
                    by["id"],
                )
            )
        below = self.conn.execute("SELECT seq FROM events WHERE seq <= ? LIMIT 1", (cut,)).fetchone()
        if below is not None:
            raise _Found(
                Problem(
                    below[0],
                    "inserted",
                    f"event {below[0]} lies before seq {cut}, up to which purge {by['id']} deleted every"
                    " event: it was inserted",
                    None,
                    by["id"],
                )
            )
        record = self._start_at(row)
        report = self.report
        report.purged_to, report.purged_by = cut, by
        report.notes.append(
            f"purged: events up to seq {cut} by purge {by['id']} at {_utc(by['ts'])} UTC; verified from"
            f" the signed checkpoint at seq {cut}"
        )
        return _digest(record)

    def _load_purges(self) -> None:
        """Check every purge record (signature, columns, the chain of ``previous``); collect the
        cut and the tombstoned ranges."""
        from hoopgw.approvals._records import RecordError, load_records

        prev_id = 0
        tombs = self.tombs
        for pid, ts, cut, deleted, tombstoned, raw in self.conn.execute(
            "SELECT id, ts, cut, deleted, tombstoned, record FROM purges ORDER BY id"
        ):
            try:
                if type(raw) is not bytes:
                    raise RecordError("the record is not text", code="malformed")  # noqa: TRY301
                [record] = load_records(raw)
                check_purge(self.key, record)
            except (RecordError, ValueError) as exc:
                raise _Found(_purge_problem(pid, "purge_invalid", f"is not valid: {exc}")) from None
            ranges = record["tombstoned"]
            if (
                record["id"] != pid
                or record["cut"] != cut
                or record["deleted"] != deleted
                or sum(b - a + 1 for a, b in ranges) != tombstoned
                or type(ts) is not float
                or round(ts * 1000) != record["ts"]
            ):
                raise _Found(_purge_problem(pid, "purge_changed", "differs from its signed record"))
            if record["previous"] != prev_id:
                if record["previous"] > prev_id:
                    missing = record["previous"]
                    raise _Found(
                        _purge_problem(
                            missing, "purge_missing", f"was deleted (purge {pid} names it as its previous)"
                        )
                    )
                raise _Found(
                    _purge_problem(pid, "purge_changed", f"names purge {record['previous']} as previous")
                )
            if cut < self.cut:
                raise _Found(_purge_problem(pid, "purge_invalid", f"cuts at seq {cut}, before its previous"))
            self.cut = cut
            self.sealed = max(self.sealed, record["sealed"])
            first, last = (ranges[0][0], ranges[-1][1]) if ranges else (0, 0)
            self.purges[pid] = _Purge(record, first, last, hashlib.sha256(PURGED_TAG))
            tombs.extend((a, b, pid) for a, b in ranges)
            prev_id = pid
        self.report.purges = len(self.purges)
        if not tombs:
            return
        tombs.sort()
        for (_, end, pid), (begin, _, other) in itertools.pairwise(tombs):
            if begin <= end:
                raise _Found(
                    _purge_problem(
                        other, "purge_invalid", f"tombstones seq {begin}, which purge {pid} already did"
                    )
                )
        self.tomb_at = tombs[0][0]

    def _run(self, prev: bytes | None, start: int, stop: int) -> None:  # the hot loop: hashing inlined
        report = self.report
        checkpoints = self.conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE seq > ? AND seq <= ? ORDER BY seq",  # noqa: S608
            (start, stop),
        )
        cp = checkpoints.fetchone()
        cp_seq = cp[0] if cp is not None else _NO_MORE
        expect = start + 1
        count = self.count
        first = None if prev is None else expect
        tomb_at = self.tomb_at
        sha256, pack, join = hashlib.sha256, HASH_HEADER.pack, b"".join
        tag, null, purge_kind = HASH_TAG, NULL_LENGTH, _PURGE_KIND
        try:
            for seq, ts, sid, kind, data, pid, stored_prev, stored in self.conn.stream(
                _EVENTS_SQL, (start, stop)
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
                if seq < tomb_at:
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
                        raise _Found(_changed(seq, data))
                    if kind == purge_kind:
                        self._purge_event(seq, data)
                else:  # listed by a purge record, or not: the slow path
                    digest = self._maybe_tombstone(seq, (ts, sid, kind, data, pid, stored), prev)
                    tomb_at = self.tomb_at
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
        self._check_tombstones(start, expect - 1)

    def _maybe_tombstone(self, seq: int, row: tuple[Any, ...], prev: bytes) -> bytes:
        """Event ``seq``, at or after the next tombstoned range: a tombstone if a purge record
        lists it (its hash taken as stored: the data it covered is gone), else hashed as usual."""
        ts, sid, kind, data, pid, stored = row
        tombs = self.tombs
        i = self.ti
        while i < len(tombs) and tombs[i][1] < seq:
            i += 1
        self.ti = i
        if i == len(tombs) or tombs[i][0] > seq:  # not listed
            self.tomb_at = tombs[i][0] if i < len(tombs) else _NO_MORE
            try:
                digest = event_hash(seq, ts, sid, kind, data, pid, prev)
            except (TypeError, struct.error):
                raise _Found(
                    Problem(seq, "malformed", f"event {seq} has a field of the wrong type")
                ) from None
            if digest != stored:
                raise _Found(_changed(seq, data))
            if kind == _PURGE_KIND:
                self._purge_event(seq, data)
            return digest
        self.tomb_at = seq + 1
        purge = self.purges[tombs[i][2]]
        pid_ = purge.record["id"]
        if data != purge_marker(pid_):
            raise _Found(
                Problem(
                    seq,
                    "tombstone_changed",
                    f"event {seq} is listed as purged by purge {pid_}, but its data is not that purge's"
                    " marker",
                    None,
                    pid_,
                )
            )
        try:
            purge.rows.update(purged_row(seq, ts, sid, kind, pid, stored))
        except (TypeError, struct.error):
            raise _Found(Problem(seq, "malformed", f"event {seq} has a field of the wrong type")) from None
        if type(stored) is not bytes or len(stored) != len(GENESIS):
            raise _Found(Problem(seq, "malformed", f"event {seq} has a field of the wrong type"))
        self.report.tombstones += 1
        return stored

    def _check_tombstones(self, start: int, last: int) -> None:
        """Each purge whose tombstones this run met all: their kept columns are as it signed them."""
        for purge in self.purges.values():
            record = purge.record
            if not purge.first or purge.first <= start or purge.last > last:
                continue  # none, or some outside this run (purged since, before --since, deleted)
            if hash_text(purge.rows.digest()) != record["rows"]:
                raise _Found(
                    Problem(
                        purge.first,
                        "tombstone_changed",
                        f"events tombstoned by purge {record['id']} were changed after it (their seq, time,"
                        " session, kind, prompt or hash differ from what it signed)",
                        None,
                        record["id"],
                    )
                )

    def _purge_event(self, seq: int, data: bytes) -> None:
        """An ``audit_purge`` event: the purge record it reports must still be in the store."""
        try:
            named = orjson.loads(data).get("purge")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if type(named) is int and named not in self.purges:
            raise _Found(
                _purge_problem(named, "purge_missing", f"was deleted (event {seq} records it)", seq=seq)
            )

    def _after_end(self) -> None:
        """A purge saw a checkpoint the chain no longer reaches: the tail was deleted with it."""
        report = self.report
        reached = max(self.prev_cp, report.last_seq or 0)
        if self.sealed > reached:
            first = reached + 1
            raise _Found(
                Problem(
                    first,
                    "truncated",
                    f"{_missing(first, self.sealed)}: deleted with their checkpoints (a purge saw the"
                    f" checkpoint at seq {self.sealed})",
                    self.sealed,
                )
            )

    def _chain_start(self, seq: int, stored_prev: bytes | None) -> bytes:
        """Where the chain begins, reading from the start (no purge cut): its genesis."""
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
        # the first checkpoint's count says where the chain began (a hint: not verified yet)
        hint = self.conn.execute("SELECT seq, events FROM checkpoints ORDER BY seq LIMIT 1").fetchone()
        first = seq - 1
        if hint is not None and type(hint[1]) is int and 1 <= hint[0] - hint[1] + 1 < first:
            first = hint[0] - hint[1] + 1
        raise _Found(
            Problem(
                max(first, 1),
                "missing",
                f"{_missing(max(first, 1), seq - 1)} (deleted): event {seq} links to an earlier event,"
                " and no signed purge record cuts the chain there",
            )
        )

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


def _purge_problem(purge_id: int, code: str, what: str, *, seq: int = 0) -> Problem:
    return Problem(seq, code, f"purge {purge_id} {what}", None, purge_id)


def _changed(seq: int, data: Any) -> Problem:
    """Event ``seq`` does not match its hash: edited, or its data erased as if purged."""
    if type(data) is bytes and _MARKER.fullmatch(data):
        return Problem(
            seq,
            "purged_unsigned",
            f"event {seq}'s data was erased as if purged, but no signed purge record lists it",
        )
    return Problem(seq, "changed", f"event {seq} was changed: its hash does not match its contents")


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000))


def _missing(first: int, last: int) -> str:
    return f"event {first} is missing" if first == last else f"events {first}..{last} are missing"


def record_json(record: Mapping[str, Any]) -> str:
    """A checkpoint record as stored: canonical JSON, signature included."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
