"""Retention: purge expired audit events so that what remains still verifies; legal holds stop it.

docs/AUDIT.md ("Retention and legal hold") is the design. :func:`purge` deletes the chain's oldest
events up to a signed checkpoint (a *prefix cut*) and erases the data of expired events after it
(*tombstones*), only among events a checkpoint already seals, never those of a session under legal
hold; each of its transactions (at most ``batch`` events) is sealed by a signed ``audit_purge``
record. :func:`hold` and :func:`release` set and lift a session's legal hold, each recorded as an
event in the chain.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.audit._chain import (
    GENESIS,
    PURGE,
    PURGED_TAG,
    event_hash,
    hash_text,
    purge_marker,
    purged_row,
    record_json,
    sign_purge,
    verify_chain,
)
from hoopgw.audit._db import DB_ERRORS, Db, Store, as_store
from hoopgw.errors import StoreError

DAY = 86_400.0
#: events erased or deleted per transaction: the gateway's writer waits for the write lock meanwhile
BATCH = 10_000
HOLD_SET = "legal_hold_set"
HOLD_RELEASED = "legal_hold_released"
#: sessions whose last hold event in the chain set a hold: the ``legal_holds`` table is a mutable
#: index, so a hold lifted there (or deleted) without its ``legal_hold_released`` event still holds
_CHAIN_HELD = (  # constants only
    f"SELECT h.session_id FROM events h WHERE h.kind = '{HOLD_SET}' AND h.session_id IS NOT NULL"  # noqa: S608
    f" AND NOT EXISTS (SELECT 1 FROM events r WHERE r.kind = '{HOLD_RELEASED}'"
    " AND r.session_id = h.session_id AND r.seq > h.seq)"
)
#: a session under an active legal hold, by the table or by the chain (gateway-wide events,
#: session_id NULL, never are)
_HELD = (  # constants only
    "(session_id IS NOT NULL AND (session_id IN"  # noqa: S608
    " (SELECT session_id FROM legal_holds WHERE released_at IS NULL)"
    f" OR session_id IN ({_CHAIN_HELD})))"
)
_RETRIES = 3  # plans made again when another purge or a hold changed the store meanwhile


class PurgeRefused(StoreError):
    """The events a purge would erase do not verify: purging them would hide the tampering."""


@dataclass(slots=True)
class PurgeResult:
    """What a purge did (or, ``dry_run``, would do)."""

    dry_run: bool
    retention: dict[str, int]
    sealed: int = 0  # the last checkpoint: nothing after it is touched
    cut: int = 0  # events up to this seq are deleted (0: none ever)
    deleted: int = 0  # events this run deleted
    tombstoned: int = 0  # events this run erased the data of
    kinds: dict[str, int] = field(default_factory=dict)  # deleted or erased, per kind
    sessions_deleted: int = 0  # summary rows of sessions left without any event
    held: int = 0  # sessions under legal hold that kept expired events
    records: list[dict[str, Any]] = field(default_factory=list)  # the signed purge records written
    events: list[dict[str, Any]] = field(default_factory=list)  # their audit_purge events' payloads

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "dry_run": self.dry_run,
            "retention": self.retention,
            "sealed": self.sealed,
            "cut": self.cut,
            "deleted": self.deleted,
            "tombstoned": self.tombstoned,
            "kinds": dict(sorted(self.kinds.items())),
            "sessions_deleted": self.sessions_deleted,
            "held": self.held,
            "purges": [r["id"] for r in self.records],
        }


def cutoffs(retention: Mapping[str, int], now: float) -> tuple[dict[str, float], float | None]:
    """When each event kind expires: events older than its cutoff (seconds since the epoch); the
    second value is the cutoff of every kind not named (``*``), None when those are kept forever."""
    named = {kind: now - days * DAY for kind, days in retention.items() if kind != "*"}
    star = retention.get("*")
    return named, None if star is None else now - star * DAY


def purge_event(record: Mapping[str, Any], sessions_deleted: int = 0) -> dict[str, Any]:
    """The payload of the ``audit_purge`` event that reports purge ``record`` in the chain."""
    return {
        "purge": record["id"],
        "cut": record["cut"],
        "deleted": record["deleted"],
        "tombstoned": sum(b - a + 1 for a, b in record["tombstoned"]),
        "kinds": record["kinds"],
        "sessions_deleted": sessions_deleted,
    }


def purge(
    data_dir: Path | Store,
    retention: Mapping[str, int],
    now: float,
    signing_key: Ed25519PrivateKey,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
    record_events: bool = False,
) -> PurgeResult:
    """Purge the events of ``data_dir``'s audit store that ``retention`` (kind → days) expires at
    ``now``; raises StoreError (PurgeRefused when the events it would erase do not verify).

    ``record_events``: append each purge's ``audit_purge`` event to the chain in the purge's own
    transaction (offline); the gateway leaves it False and records them through its writer.
    """
    store = as_store(data_dir)
    conn = store.connect(create=False)
    try:
        return _Purger(conn, retention, now, signing_key, batch, record_events=record_events).run(dry_run)
    except DB_ERRORS as exc:
        raise StoreError(f"cannot purge the audit store {store.label}: {store.scrub(str(exc))}") from None
    finally:
        conn.close()


@dataclass(slots=True)
class _Plan:
    prev_id: int  # the last purge record, and its cut
    prev_cut: int
    held: frozenset[str]  # sessions under legal hold when planned
    first: int = 0  # the first event left
    cut: int = 0  # delete events up to here (prev_cut: none)
    tombs: list[int] = field(default_factory=list)  # erase the data of these
    sealed: int = 0  # the last event a checkpoint seals

    @property
    def empty(self) -> bool:
        return self.cut <= self.prev_cut and not self.tombs


class _Purger:
    def __init__(
        self,
        conn: Db,
        retention: Mapping[str, int],
        now: float,
        key: Ed25519PrivateKey,
        batch: int,
        *,
        record_events: bool,
    ) -> None:
        self.conn = conn
        self.retention = dict(sorted(retention.items()))
        self.key = key
        self.batch = max(1, batch)
        self.record_events = record_events
        self.tombstone = conn.dialect.purge_marker("data")  # data erased already
        named, star = cutoffs(retention, now)
        if named:
            cases = " ".join("WHEN ? THEN ts < ?" for _ in named)
            rest = "FALSE" if star is None else "ts < ?"
            self.expired = f"(CASE kind {cases} ELSE {rest} END)"
        else:
            self.expired = "FALSE" if star is None else "(ts < ?)"
        self.args: tuple[Any, ...] = (
            *(v for item in sorted(named.items()) for v in item),
            *(() if star is None else (star,)),
        )

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def run(self, dry_run: bool) -> PurgeResult:
        result = PurgeResult(dry_run=dry_run, retention=self.retention)
        result.cut = self._one("SELECT max(cut) FROM purges") or 0
        result.sealed = self._one("SELECT max(seq) FROM checkpoints") or 0
        if not self.retention or not result.sealed:
            return result
        result.held = self._one(
            f"SELECT count(DISTINCT session_id) FROM events WHERE seq <= ? AND {self.expired} AND {_HELD}",  # noqa: S608
            (result.sealed, *self.args),
        )
        if dry_run:
            plan = self._plan(result.sealed, None)
            result.cut = max(result.cut, plan.cut)
            result.deleted = self._one("SELECT count(*) FROM events WHERE seq <= ?", (plan.cut,))
            result.tombstoned = len(plan.tombs)
            result.kinds = dict(self._kinds(plan))
            return result
        retries = 0
        kinds: Counter[str] = Counter()
        while True:
            plan = self._plan(result.sealed, self.batch)
            if plan.empty:
                break
            self._verify(plan)
            done = self._apply(plan)
            if done is None:  # another purge, or a legal hold, changed the store meanwhile
                retries += 1
                if retries > _RETRIES:
                    raise StoreError("the audit store keeps changing under the purge: try again later")
                continue
            record, batch_kinds, sessions = done
            result.records.append(record)
            result.events.append(purge_event(record, sessions))
            result.cut = record["cut"]
            result.deleted += record["deleted"]
            result.tombstoned += sum(b - a + 1 for a, b in record["tombstoned"])
            kinds.update(batch_kinds)
            result.sessions_deleted += sessions
        result.kinds = dict(kinds)
        return result

    def _plan(self, sealed: int, limit: int | None) -> _Plan:
        """What to purge next: read without the write lock (rows a checkpoint seals never change)."""
        last = self.conn.execute("SELECT id, cut FROM purges ORDER BY id DESC LIMIT 1").fetchone()
        prev_id, prev_cut = last if last is not None else (0, 0)
        plan = _Plan(prev_id, prev_cut, self._held(), sealed=sealed)
        head = self._one("SELECT max(seq) FROM events")
        first = self._one("SELECT min(seq) FROM events")
        if head is None or first is None:
            return plan
        plan.first = first
        # the prefix: up to the first event that stays; never the head (the writer reads it), unless
        # the purge appends its own event first
        bound = sealed if self.record_events else min(sealed, head - 1)
        keep = self._one(
            f"SELECT seq FROM events WHERE seq > ? AND seq <= ? AND NOT ({self.expired} AND NOT {_HELD})"  # noqa: S608
            " ORDER BY seq LIMIT 1",
            (prev_cut, bound, *self.args),
        )
        reach = bound if keep is None else keep - 1
        final = self._one("SELECT max(seq) FROM checkpoints WHERE seq > ? AND seq <= ?", (prev_cut, reach))
        final = prev_cut if final is None else final
        plan.cut = final
        if limit is not None and final - first + 1 > limit:  # in steps, each at a checkpoint
            step = self._one(
                "SELECT max(seq) FROM checkpoints WHERE seq > ? AND seq <= ?", (prev_cut, first - 1 + limit)
            )
            if step is None:
                step = self._one("SELECT min(seq) FROM checkpoints WHERE seq > ?", (prev_cut,))
            plan.cut = step
        room = None if limit is None else limit - max(0, plan.cut - first + 1)
        if room is None or room > 0:
            # after the final cut (what lies before it goes whole), up to the last checkpoint
            plan.tombs = [
                seq
                for (seq,) in self.conn.execute(
                    f"SELECT seq FROM events WHERE seq > ? AND seq <= ? AND hash IS NOT NULL"  # noqa: S608
                    f" AND NOT {self.tombstone} AND {self.expired} AND NOT {_HELD} ORDER BY seq LIMIT ?",
                    (final, sealed, *self.args, self.conn.dialect.no_limit if room is None else room),
                )
            ]
        return plan

    def _held(self) -> frozenset[str]:
        rows = self.conn.execute(
            f"SELECT session_id FROM legal_holds WHERE released_at IS NULL UNION {_CHAIN_HELD}"  # noqa: S608
        )
        return frozenset(sid for (sid,) in rows)

    def _kinds(self, plan: _Plan) -> Counter[str]:
        kinds: Counter[str] = Counter()
        if plan.cut > plan.prev_cut:
            rows = self.conn.execute(
                "SELECT kind, count(*) FROM events WHERE seq <= ? GROUP BY kind", (plan.cut,)
            )
            kinds.update({kind: n for kind, n in rows})
        for a, b in _ranges(plan.tombs):
            rows = self.conn.execute(
                "SELECT kind, count(*) FROM events WHERE seq BETWEEN ? AND ? GROUP BY kind", (a, b)
            )
            kinds.update({kind: n for kind, n in rows})
        return kinds

    def _verify(self, plan: _Plan) -> None:
        """The sealed chain from the first event it erases on verifies (else the purge would launder
        tampering: an edited event, or a deleted ``legal_hold_set`` that should have kept some)."""
        low = plan.first if plan.cut > plan.prev_cut else plan.tombs[0]
        high = max(plan.cut, plan.tombs[-1] if plan.tombs else 0, plan.sealed)
        report = verify_chain(self.conn, self.key.public_key(), since_seq=low, until_seq=high)
        if report.problem is not None:
            p = report.problem
            raise PurgeRefused(
                f"refusing to purge: the events it would erase do not verify (seq {p.seq}, {p.code}:"
                f" {p.message}); run hoopgw audit verify"
            )

    def _apply(self, plan: _Plan) -> tuple[dict[str, Any], Counter[str], int] | None:
        """Erase and delete what ``plan`` says and sign it, in one transaction; None if the store
        changed since it was planned (another purge ran, a hold was set or lifted)."""
        conn = self.conn
        conn.begin_write()
        try:
            last = conn.execute("SELECT id, cut FROM purges ORDER BY id DESC LIMIT 1").fetchone()
            if tuple(last or (0, 0)) != (plan.prev_id, plan.prev_cut) or self._held() != plan.held:
                conn.execute("ROLLBACK")
                return None
            pid = plan.prev_id + 1
            kinds = self._kinds(plan)
            ranges = _ranges(plan.tombs)
            rows = hashlib.sha256(PURGED_TAG)
            for a, b in ranges:
                for seq, ts, sid, kind, prompt_id, digest in conn.execute(
                    "SELECT seq, ts, session_id, kind, prompt_id, hash FROM events WHERE seq BETWEEN ? AND ?"
                    " ORDER BY seq",
                    (a, b),
                ):
                    rows.update(purged_row(seq, ts, _utf8(sid), kind.encode(), _utf8(prompt_id), digest))
            deleted, dropped = 0, []
            if plan.cut > plan.prev_cut:
                deleted = self._one("SELECT count(*) FROM events WHERE seq <= ?", (plan.cut,))
                dropped = self._droppable(plan)
            now_ms = time.time_ns() // 1_000_000
            record = sign_purge(
                self.key,
                {
                    "id": pid,
                    "previous": plan.prev_id,
                    "ts": now_ms,
                    "cut": plan.cut,
                    "deleted": deleted,
                    "tombstoned": [[a, b] for a, b in ranges],
                    "rows": hash_text(rows.digest()),
                    "kinds": dict(sorted(kinds.items())),
                    "sealed": self._one("SELECT max(seq) FROM checkpoints"),
                    "retention": self.retention,
                    "held": len(plan.held),
                },
            )
            if self.record_events:  # first: it links to the head, which the cut may delete
                append_event(conn, now_ms / 1000, None, PURGE, purge_event(record, len(dropped)))
            marker = purge_marker(pid).decode()
            conn.executemany(
                "UPDATE events SET data = ? WHERE seq BETWEEN ? AND ?", [(marker, a, b) for a, b in ranges]
            )
            if plan.cut > plan.prev_cut:
                conn.execute("DELETE FROM events WHERE seq <= ?", (plan.cut,))
                conn.executemany("DELETE FROM sessions WHERE id = ?", [(sid,) for sid in dropped])
            conn.execute(
                "INSERT INTO purges (id, ts, cut, deleted, tombstoned, record) VALUES (?, ?, ?, ?, ?, ?)",
                (pid, now_ms / 1000, plan.cut, deleted, len(plan.tombs), record_json(record)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return record, kinds, len(dropped)

    def _droppable(self, plan: _Plan) -> list[str]:
        """Closed sessions (not held) the cut leaves without any event: their summary rows go too."""
        touched = self.conn.execute(
            "SELECT DISTINCT session_id FROM events WHERE seq <= ? AND session_id IS NOT NULL", (plan.cut,)
        ).fetchall()
        return [
            sid
            for (sid,) in touched
            if sid not in plan.held
            and self._one(
                "SELECT 1 FROM sessions WHERE id = ? AND status = 'closed'"
                " AND NOT EXISTS (SELECT 1 FROM events WHERE session_id = ? AND seq > ?)",
                (sid, sid, plan.cut),
            )
        ]


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of increasing ``seqs`` as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def _utf8(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


# --- events written outside the gateway's writer ---------------------------------------------------------


def append_event(conn: Db, ts: float, session_id: str | None, kind: str, data: Mapping[str, Any]) -> int:
    """Append one chained event in ``conn``'s open write transaction (``begin_write``); its seq.

    The head is read under the write lock, as the gateway's writer does in each of its
    transactions, so this is safe while a gateway runs; it signs no checkpoint (the gateway's
    writer seals the event with its next one).
    """
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        seq, prev = 0, GENESIS
    else:
        seq, prev = row
        if prev is None:
            chained = conn.execute(
                "SELECT hash FROM events WHERE hash IS NOT NULL ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            prev = GENESIS if chained is None else chained[0]
    seq += 1
    body = orjson.dumps(dict(data))
    digest = event_hash(seq, ts, _utf8(session_id), kind.encode(), body, None, prev)
    conn.execute(
        "INSERT INTO events (seq, ts, session_id, kind, data, prompt_id, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
        (seq, ts, session_id, kind, body.decode(), prev, digest),
    )
    return int(seq)


# --- legal holds ------------------------------------------------------------------------------------------


def hold(
    data_dir: Path | Store, session_id: str, *, reason: str, by: str, now: float | None = None
) -> dict[str, Any]:
    """Put session ``session_id`` under legal hold (its events are never purged); the hold."""
    when = time.time() if now is None else now
    store = as_store(data_dir)
    conn = store.connect(create=False)
    try:
        conn.begin_write()
        try:
            if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise StoreError(f"no session {session_id!r}")  # noqa: TRY301
            active = _active(conn, session_id)
            if active is not None:
                raise StoreError(  # noqa: TRY301
                    f"session {session_id} is already under legal hold (set by {active['set_by']})"
                )
            conn.execute(
                "INSERT INTO legal_holds (session_id, set_by, set_at, reason) VALUES (?, ?, ?, ?)",
                (session_id, by, when, reason),
            )
            append_event(conn, when, session_id, HOLD_SET, {"by": by, "reason": reason})
            out = _active(conn, session_id)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except DB_ERRORS as exc:
        raise StoreError(f"cannot set the legal hold: {store.scrub(str(exc))}") from None
    finally:
        conn.close()
    assert out is not None
    return out


def release(data_dir: Path | Store, session_id: str, *, by: str, now: float | None = None) -> dict[str, Any]:
    """Lift the legal hold on session ``session_id``; the hold, released."""
    when = time.time() if now is None else now
    store = as_store(data_dir)
    conn = store.connect(create=False)
    try:
        conn.begin_write()
        try:
            active = _active(conn, session_id)
            if active is None:
                raise StoreError(f"session {session_id!r} is not under legal hold")  # noqa: TRY301
            conn.execute(
                "UPDATE legal_holds SET released_by = ?, released_at = ? WHERE id = ?",
                (by, when, active["id"]),
            )
            append_event(conn, when, session_id, HOLD_RELEASED, {"by": by, "hold_set_by": active["set_by"]})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except DB_ERRORS as exc:
        raise StoreError(f"cannot release the legal hold: {store.scrub(str(exc))}") from None
    finally:
        conn.close()
    return {**active, "released_by": by, "released_at": when}


def _active(conn: Db, session_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, session_id, set_by, set_at, reason FROM legal_holds"
        " WHERE session_id = ? AND released_at IS NULL",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("id", "session_id", "set_by", "set_at", "reason"), row, strict=True))
