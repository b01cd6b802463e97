"""``PackWriter``: the files of one evidence pack, read from one snapshot of the audit store.

docs/EVIDENCE.md describes each file. Events stream from the store to ``events.jsonl`` (and through
the report's counters) one row at a time; the other tables are written as they are read.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.approvals import StoredDecision, StoredRequest, key_id, public_key_pem, tally
from hoopgw.audit._db import Db
from hoopgw.audit._prompts import Prompt
from hoopgw.evidence._events import COLUMNS, event_line, text_of
from hoopgw.evidence._manifest import (
    APPROVALS_FILE,
    CHAIN_FILE,
    CHECKPOINTS_FILE,
    COUNTS,
    EVENTS_FILE,
    MANIFEST_FILE,
    PACK_FILES,
    PROMPTS_FILE,
    PUBLIC_KEY_FILE,
    PURGES_FILE,
    REPORT_FILE,
    SESSIONS_FILE,
    file_sha256,
    sign_manifest,
)
from hoopgw.evidence._progress import ProgressFactory
from hoopgw.evidence._report import ReportInfo, render
from hoopgw.evidence._stats import Stats

#: The columns of ``sessions.csv``.
SESSION_COLUMNS = (
    "id", "type", "connection", "subject", "groups", "client_addr", "auth", "status", "started_at",
    "ended_at", "close_reason", "statements", "errors", "masked", "prompt_id", "params",
)  # fmt: skip
#: A session's row, its ``session_open`` and ``session_close`` events (chained: they win over the
#: row, which nothing seals) and its statements counted from its ``statement`` events, in one query.
_SESSION_SQL = (
    "SELECT s.id, s.type, s.connection, s.subject, s.groups, s.client_addr, s.auth, s.status, s.started_at,"
    " s.ended_at, s.close_reason, s.statements, s.errors, s.masked, s.params,"
    " o.ts AS chain_open_ts, o.data AS chain_open_data, c.ts AS chain_close_ts, c.data AS chain_close_data,"
    " n.statements AS chain_statements, n.errors AS chain_errors, n.erased AS chain_erased"
    " FROM sessions s"
    " LEFT JOIN events o ON o.session_id = s.id AND o.kind = 'session_open'"
    " LEFT JOIN events c ON c.session_id = s.id AND c.kind = 'session_close'"
    " LEFT JOIN (SELECT session_id, count(*) AS statements,"
    " sum(CASE WHEN data LIKE ? THEN 1 ELSE 0 END) AS errors,"
    " sum(CASE WHEN {erased} THEN 1 ELSE 0 END) AS erased"
    " FROM events WHERE kind = 'statement' AND session_id IN (SELECT s.id FROM sessions s WHERE {where})"
    " GROUP BY session_id) n ON n.session_id = s.id"
    " WHERE {where} ORDER BY s.started_at, s.id"
)
#: a statement event that failed: its data as the writer encodes it (compact JSON; a quote inside a
#: string value is escaped, so only the member itself matches)
_ERROR_STATUS = '%"status":"error"%'
#: the session fields ``session_open`` records, which the chain vouches for
_OPEN_FIELDS = ("type", "connection", "subject", "groups", "client_addr", "auth", "params")
#: events that name an approval request (``request_id``; ``access_requested``: ``id``) or a decision
_REQUEST_EVENTS = frozenset(
    {"approval_requested", "approval_decided", "approval_closed", "approval_void", "approval_callback"}
)
_DECISION_EVENTS = frozenset({"approval_decided", "approval_callback"})
_REQUEST_COLUMNS = (
    "id, status, connection, requester, requester_owner, one_of_each_group, created_at, expires_at,"
    " closed_at, close_reason, record"
)
_DECISION_COLUMNS = "id, approver_owner, record"
_PROMPT_SQL = (
    "SELECT id, created_at, subject, auth, assistant, model, human, prompt, generated_code FROM prompts"
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting so


def iso_ms(seconds: float | None) -> str:
    """``2024-05-01T12:00:03.123Z`` (empty for None)."""
    if seconds is None:
        return ""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (OWASP: a leading ')."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class PackWriter:
    """Writes one pack's files into ``root`` from one read snapshot of the store."""

    def __init__(
        self,
        conn: Db,
        root: Path,
        since: float | None,
        until: float,
        head: int,
        classify: Callable[[str, tuple[str, ...]], str],
        progress: ProgressFactory,
    ) -> None:
        self.conn = conn
        self.root = root
        self.since = since
        self.until = until
        self.head = head
        self.progress = progress
        self.stats = Stats(classify)
        self.counts = dict.fromkeys(COUNTS, 0)
        self.lo: int | None = None
        self.hi: int | None = None
        self.requests_named: set[str] = set()  # approval requests named by an exported event
        self.decisions_named: dict[str, int] = {}  # decision id -> seq of the exported event naming it

    @contextlib.contextmanager
    def _file(self, name: str, *, text: bool = False) -> Iterator[IO[Any]]:
        path = self.root / name
        f: IO[Any] = path.open("w", encoding="utf-8", newline="") if text else path.open("wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())

    def write(self, key: Ed25519PrivateKey, chain: dict[str, Any], created: float) -> dict[str, Any]:
        """Every file, then the signed manifest (returned)."""
        self.conn.begin_read()  # one snapshot for everything read below
        try:
            self._range()
            self._events()
            self._checkpoints()
            self._purges()
            self._sessions()
            self._approvals()
            self._prompts()
        finally:
            self.conn.execute("ROLLBACK")
        if self.stats.warnings:  # the tables disagree with the chain: the pack follows the chain
            chain["warnings"] = list(self.stats.warnings)
        with self._file(CHAIN_FILE) as f:
            f.write(orjson.dumps(chain, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        with self._file(PUBLIC_KEY_FILE, text=True) as f:
            f.write(public_key_pem(key.public_key()))
        info = ReportInfo(
            created_at=_ms(created),
            since=None if self.since is None else _ms(self.since),
            until=_ms(self.until),
            key_id=key_id(key.public_key()),
            chain=chain,
            first_seq=self.lo,
            last_seq=self.hi,
            files=(*PACK_FILES, MANIFEST_FILE),
        )
        with self._file(REPORT_FILE, text=True) as f:
            f.write(render(info, self.stats))
        body = {
            "created_at": info.created_at,
            "since": info.since,
            "until": info.until,
            "first_seq": self.lo,
            "last_seq": self.hi,
            "counts": self.counts,
            "files": {
                name: {"sha256": file_sha256(self.root / name), "bytes": (self.root / name).stat().st_size}
                for name in PACK_FILES
            },
        }
        manifest = sign_manifest(key, body)
        with self._file(MANIFEST_FILE) as f:
            f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        return manifest

    def _time_where(self, column: str, scale: int = 1) -> tuple[str, list[Any]]:
        """``column`` within [since, until), ``scale`` 1000 for millisecond columns."""
        if self.since is None:
            return f"{column} < ?", [self._at(self.until, scale)]
        return f"{column} >= ? AND {column} < ?", [self._at(self.since, scale), self._at(self.until, scale)]

    @staticmethod
    def _at(seconds: float, scale: int) -> float | int:
        return seconds if scale == 1 else round(seconds * scale)

    def _range(self) -> None:
        """The events exported: from the first at or after ``since`` to the last before ``until``, by
        seq (contiguous, so their linkage can be checked in the pack; a statement's ``ts`` is when it
        started, so near the bounds a few may lie just outside the range)."""
        start = "seq <= ?" if self.since is None else "ts >= ? AND seq <= ?"
        args: list[Any] = [self.head] if self.since is None else [self.since, self.head]
        lo = self.conn.execute(f"SELECT min(seq) FROM events WHERE {start}", args).fetchone()[0]  # noqa: S608
        hi = self.conn.execute(
            "SELECT max(seq) FROM events WHERE ts < ? AND seq <= ?", (self.until, self.head)
        ).fetchone()[0]
        if lo is not None and hi is not None and lo <= hi:
            self.lo, self.hi = int(lo), int(hi)

    def _events(self) -> None:
        total = self.hi - self.lo + 1 if self.lo is not None and self.hi is not None else 0
        bar = self.progress("events", total)
        stats = self.stats
        self.conn.text_factory = bytes  # the stored bytes as they are (what the hash covers)
        try:
            with self._file(EVENTS_FILE) as f:
                if total:
                    rows = self.conn.stream(
                        f"SELECT {COLUMNS} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",  # noqa: S608
                        (self.lo, self.hi),
                    )
                    for row in rows:
                        f.write(event_line(row))
                        kind, data = text_of(row[3]) or "", text_of(row[4]) or ""
                        stats.add_event(kind, data)
                        if kind in _REQUEST_EVENTS or kind == "access_requested":
                            self._names_approval(row[0], kind, data)
                        bar.advance()
        finally:
            self.conn.text_factory = str
            bar.finish()
        self.counts["events"] = stats.events

    def _names_approval(self, seq: int, kind: str, text: str) -> None:
        """Note the request (and decision) an exported approval event names: the pack holds them."""
        data = _json(text)
        if not isinstance(data, dict):
            return  # erased by retention, or a tampered row (its hash fails)
        request = data.get("id" if kind == "access_requested" else "request_id")
        if isinstance(request, str):
            self.requests_named.add(request)
        decision = data.get("decision_id")
        if kind in _DECISION_EVENTS and isinstance(decision, str):
            self.decisions_named[decision] = seq

    def _checkpoints(self) -> None:
        with self._file(CHECKPOINTS_FILE) as f:
            if self.lo is None:
                return
            for (record,) in self.conn.execute(
                "SELECT record FROM checkpoints WHERE seq BETWEEN ? AND ? ORDER BY seq", (self.lo, self.hi)
            ):
                f.write(str(record).encode() + b"\n")
                self.counts["checkpoints"] += 1
        self.stats.checkpoints = self.counts["checkpoints"]

    def _purges(self) -> None:
        """Every signed retention purge record (docs/AUDIT.md): they say which events' data was erased
        and where the chain starts, whatever the exported range."""
        with self._file(PURGES_FILE) as f:
            for (record,) in self.conn.execute("SELECT record FROM purges ORDER BY id"):
                f.write(str(record).encode() + b"\n")
                self.counts["purges"] += 1

    def _sessions(self) -> None:
        where, args = self._time_where("s.started_at")
        if self.lo is not None:
            where = f"({where}) OR s.id IN (SELECT session_id FROM events WHERE seq BETWEEN ? AND ?)"  # noqa: S608
            args += [self.lo, self.hi]
        sql = _SESSION_SQL.format(where=where, erased=self.conn.dialect.purge_marker("data"))
        differ: set[str] = set()
        last = None
        with self._file(SESSIONS_FILE, text=True) as f:
            out = csv.writer(f, lineterminator="\r\n")
            out.writerow(SESSION_COLUMNS)
            for row in self.conn.stream(sql, [_ERROR_STATUS, *args, *args], mapping=True):
                if row["id"] == last:
                    continue  # a second session_open or session_close row: the chain has the first
                last = row["id"]
                session, changed = _chained_session(dict(row))
                if changed:
                    differ.add(str(session["id"]))
                params = _json(session["params"])
                started, ended = session["started_at"], session["ended_at"]
                in_range = (self.since is None or started >= self.since) and started < self.until
                self.stats.add_session(session, iso_ms(started)[:10] if in_range else None)
                groups = _json(session["groups"])
                out.writerow(
                    [
                        _cell(v)
                        for v in (
                            session["id"], session["type"], session["connection"], session["subject"],
                            " ".join(map(str, groups)) if isinstance(groups, list) else session["groups"],
                            session["client_addr"], session["auth"], session["status"], iso_ms(started),
                            iso_ms(ended), session["close_reason"], session["statements"], session["errors"],
                            session["masked"] or "",
                            params.get("prompt_id") if isinstance(params, dict) else None,
                            session["params"],
                        )
                    ]
                )  # fmt: skip
                self.counts["sessions"] += 1
        if differ:
            self.stats.warnings.append(
                f"the sessions table differs from the audit chain for {len(differ)} session"
                f"{'s' * (len(differ) != 1)} ({_some(differ)}):"
                " sessions.csv shows what the chain recorded"
            )

    def _approvals(self) -> None:
        where, args = self._time_where("created_at", 1000)
        now = _ms(self.until)
        seen: set[str] = set()
        decided: set[str] = set()
        differ: list[str] = []
        decisions = self.conn.cursor()
        with self._file(APPROVALS_FILE) as f:

            def write(rows: Iterable[tuple[Any, ...]]) -> None:
                for row in rows:
                    rid = str(row[0])
                    if rid in seen:
                        continue
                    seen.add(rid)
                    f.write(_line(row[-1]))
                    drows = decisions.execute(
                        f"SELECT {_DECISION_COLUMNS} FROM approval_decisions WHERE request_id = ?"  # noqa: S608
                        " ORDER BY decided_at, rowid",
                        (rid,),
                    ).fetchall()
                    for drow in drows:
                        f.write(_line(drow[-1]))
                        if drow[0] in self.decisions_named:
                            decided.add(str(drow[0]))
                    status, closed_at = _signed_status(row, drows, now)
                    if status != row[1]:
                        differ.append(rid)
                    self.stats.add_request(status, int(row[6]), closed_at, len(drows))
                    self.counts["approval_records"] += 1 + len(drows)

            write(
                self.conn.execute(
                    f"SELECT {_REQUEST_COLUMNS} FROM approval_requests WHERE {where} ORDER BY created_at, id",  # noqa: S608
                    args,
                )
            )
            named = sorted(self.requests_named - seen)
            for start in range(0, len(named), 500):  # requests made before the range, named in it
                chunk = named[start : start + 500]
                write(
                    self.conn.execute(
                        f"SELECT {_REQUEST_COLUMNS} FROM approval_requests"  # noqa: S608
                        f" WHERE id IN ({', '.join('?' * len(chunk))}) ORDER BY created_at, id",
                        chunk,
                    ).fetchall()
                )
        missing = sorted(set(self.decisions_named) - decided)
        if differ:
            self.stats.warnings.append(
                f"the approval_requests table's status differs from the signed decisions for {len(differ)}"
                f" request{'s' * (len(differ) != 1)} ({_some(differ)}):"
                " the report counts the status the signed decisions give"
            )
        if missing:
            self.stats.warnings.append(
                f"{len(missing)} approval decision{'s' * (len(missing) != 1)} recorded in the audit chain"
                f" {'have' if len(missing) != 1 else 'has'} no signed record in the store"
                f" ({_some(missing)})"
            )

    def _prompts(self) -> None:
        where, args = self._time_where("created_at")
        requested, requested_args = self._time_where("created_at", 1000)
        prompt_of = self.conn.dialect.json("record", "prompt_id")
        where = f"({where}) OR id IN (SELECT {prompt_of} FROM approval_requests WHERE {requested})"  # noqa: S608
        args += requested_args
        if self.lo is not None:
            where += (
                " OR id IN (SELECT prompt_id FROM events WHERE seq BETWEEN ? AND ? AND prompt_id IS NOT NULL)"
            )
            args += [self.lo, self.hi]
        with self._file(PROMPTS_FILE) as f:
            sql = f"{_PROMPT_SQL} WHERE {where} ORDER BY created_at, id"
            for row in self.conn.execute(sql, args):
                prompt = Prompt(
                    id=row[0], created_at=row[1], subject=row[2], auth=row[3], assistant=row[4],
                    model=row[5], human=row[6], prompt=row[7], generated_code=row[8],
                )  # fmt: skip
                f.write(orjson.dumps(prompt.public()) + b"\n")
                self.counts["prompts"] += 1
        self.stats.prompts = self.counts["prompts"]


def _chained_session(row: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A session as its ``session_open`` / ``session_close`` events and its ``statement`` events say
    (the chain wins over the row), and whether the row said otherwise. A session whose open event a
    retention purge erased or deleted is as the row says."""
    session = {k: row[k] for k in row if not k.startswith("chain_")}
    opened = _json(row["chain_open_data"])
    if not isinstance(opened, dict) or not all(k in opened for k in _OPEN_FIELDS):
        return session, False  # not covered by the chain (erased, or a store from before it)
    chained: dict[str, Any] = {name: opened[name] for name in _OPEN_FIELDS}
    chained["started_at"] = row["chain_open_ts"]
    closed = _json(row["chain_close_data"])
    if isinstance(closed, dict):
        masked = closed.get("masked")
        chained.update(
            status="closed", ended_at=row["chain_close_ts"], close_reason=closed.get("reason"),
            masked=masked if isinstance(masked, dict) and masked else None,
        )  # fmt: skip
    elif row["chain_close_ts"] is None:
        chained.update(status="open", ended_at=None, close_reason=None, masked=None)
    if row["chain_statements"] is not None or row["chain_open_ts"] is not None:
        chained["statements"] = int(row["chain_statements"] or 0)
        if not int(row["chain_erased"] or 0):  # an erased statement's status is gone: the row's count stands
            chained["errors"] = int(row["chain_errors"] or 0)
    changed = False
    for name, value in chained.items():
        stored = session[name]
        if name in ("groups", "params", "masked"):
            stored = _json(stored) if stored else None
            if name == "groups":
                value = sorted(map(str, value)) if isinstance(value, list) else value
        if stored != value:
            changed = True
    for name in ("groups", "params", "masked"):
        if name in chained:
            value = chained[name]
            session[name] = None if value is None else orjson.dumps(value).decode()
    session.update({k: v for k, v in chained.items() if k not in ("groups", "params", "masked")})
    return session, changed


def _request(row: tuple[Any, ...]) -> StoredRequest:
    return StoredRequest(
        id=row[0], status=row[1], connection=row[2], requester=row[3], requester_owner=row[4],
        one_of_each_group=bool(row[5]), created_at=int(row[6]), expires_at=int(row[7]),
        closed_at=row[8], close_reason=row[9], record=orjson.loads(row[10]),
    )  # fmt: skip


def _decision(row: tuple[Any, ...]) -> StoredDecision:
    record = orjson.loads(row[-1])
    return StoredDecision(
        id=record["id"], request_id=record["request_id"], approver=record["approver"]["subject"],
        approver_owner=row[1], decision=record["decision"], decided_at=int(record["decided_at"]),
        record=record,
    )  # fmt: skip


def _signed_status(row: tuple[Any, ...], decisions: list[Any], now: int) -> tuple[str, int | None]:
    """The status the signed decisions give a request (a row of ``_REQUEST_COLUMNS``, its decisions'
    rows), and when it closed (ms): approved or denied as they tally (the status column is not
    signed); otherwise the row's pending, expired or void (none signed: the chain's ``approval_*``
    events tell them), or expired or pending by the signed ``expires_at`` when the row claims a
    decision the records do not hold. A record that cannot be read: the row as it is."""
    column, closed_at = str(row[1]), row[8]
    try:
        request = _request(row)
        stored = [_decision(d) for d in decisions]
        status, _ = tally(request, stored)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return column, closed_at  # a tampered record: its signature fails in approvals.jsonl
    if status != "pending":
        return status, closed_at if status == column else max(d.decided_at for d in stored)
    if column in ("pending", "expired", "void"):
        return column, closed_at
    expires = request.expires_at
    return ("expired", expires) if expires <= now else ("pending", None)


def _some(ids: Iterable[str], most: int = 5) -> str:
    """The first ``most`` of ``ids`` (sorted), and ``...`` if there are more."""
    ordered = sorted(ids)
    return ", ".join(ordered[:most]) + (", ..." if len(ordered) > most else "")


def _json(text: Any) -> Any:
    try:
        return orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None


def _line(record: Any) -> bytes:
    """A stored record (canonical JSON text) as one line."""
    return str(record).replace("\n", " ").encode() + b"\n"  # canonical JSON holds none: whitespace
