"""``PackWriter``: the files of one evidence pack, read from one snapshot of the audit store.

docs/EVIDENCE.md describes each file. Events stream from the store to ``events.jsonl`` (and through
the report's counters) one row at a time; the other tables are written as they are read.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.approvals import key_id, public_key_pem
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
_SESSION_SQL = (
    "SELECT id, type, connection, subject, groups, client_addr, auth, status, started_at, ended_at,"
    " close_reason, statements, errors, masked, params FROM sessions"
)
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
                        stats.add_event(text_of(row[3]) or "", text_of(row[4]) or "")
                        bar.advance()
        finally:
            self.conn.text_factory = str
            bar.finish()
        self.counts["events"] = stats.events

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
        where, args = self._time_where("started_at")
        if self.lo is not None:
            where = f"({where}) OR id IN (SELECT session_id FROM events WHERE seq BETWEEN ? AND ?)"  # noqa: S608
            args += [self.lo, self.hi]
        with self._file(SESSIONS_FILE, text=True) as f:
            out = csv.writer(f, lineterminator="\r\n")
            out.writerow(SESSION_COLUMNS)
            sql = f"{_SESSION_SQL} WHERE {where} ORDER BY started_at, id"
            for row in self.conn.stream(sql, args, mapping=True):
                session = dict(row)
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

    def _approvals(self) -> None:
        where, args = self._time_where("created_at", 1000)
        decisions = self.conn.cursor()
        with self._file(APPROVALS_FILE) as f:
            for rid, status, created_at, closed_at, record in self.conn.execute(
                f"SELECT id, status, created_at, closed_at, record FROM approval_requests WHERE {where}"  # noqa: S608
                " ORDER BY created_at, id",
                args,
            ):
                f.write(_line(record))
                made = 0
                for (decision,) in decisions.execute(
                    "SELECT record FROM approval_decisions WHERE request_id = ? ORDER BY decided_at, rowid",
                    (rid,),
                ):
                    f.write(_line(decision))
                    made += 1
                self.stats.add_request(status, created_at, closed_at, made)
                self.counts["approval_records"] += 1 + made

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


def _json(text: Any) -> Any:
    try:
        return orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None


def _line(record: Any) -> bytes:
    """A stored record (canonical JSON text) as one line."""
    return str(record).replace("\n", " ").encode() + b"\n"  # canonical JSON holds none: whitespace
