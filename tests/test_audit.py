"""Audit store and writer: round trip, bounded flush delay, overflow accounting, open failures."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hoopgw.audit import (
    DB_FILE,
    SCHEMA_VERSION,
    AuditStore,
    AuditWriter,
    SessionInfo,
    is_session_id,
    new_session_id,
)
from hoopgw.errors import StoreError


@dataclass
class FakeStatement:
    """Same attributes as hoopgw._core.Statement (the writer reads them duck-typed)."""

    sql: str
    kind: str = "query"
    statement_name: str | None = None
    portal: str | None = None
    params: list[str | None] | None = None
    tags: list[str] = field(default_factory=lambda: ["SELECT 1"])
    rows: int = 1
    status: str = "ok"
    error: tuple[str, str] | None = None
    started_ns: int = field(default_factory=time.time_ns)
    ended_ns: int = 0

    def __post_init__(self) -> None:
        if not self.ended_ns:
            self.ended_ns = self.started_ns + 2_500_000


def info(sid: str, **kw: object) -> SessionInfo:
    base: dict[str, object] = {
        "id": sid,
        "type": "postgres",
        "connection": "bankdb",
        "subject": "alice",
        "groups": frozenset({"dba", "ai-agents"}),
        "client_addr": "127.0.0.1:50000",
        "auth": "token",
        "params": {"application_name": "psql", "database": "bank"},
    }
    base.update(kw)
    return SessionInfo(**base)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.05)
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    writer.statement(sid, FakeStatement("select 1"))
    writer.statement(
        sid,
        FakeStatement(
            "select $1::int",
            kind="execute",
            statement_name="s1",
            portal="",
            params=["42", None],
            tags=[],
            rows=0,
            status="error",
            error=("22P02", "invalid input syntax"),
        ),
    )
    writer.event(sid, "notice", {"message": "hello"})
    writer.session_close(sid, "client_terminated")
    writer.close()

    with AuditStore.open(tmp_path) as store:
        [session] = store.list_sessions()
        assert session == store.get_session(sid)
        assert session["id"] == sid and session["status"] == "closed" and session["type"] == "postgres"
        assert session["groups"] == ["ai-agents", "dba"]
        assert session["params"] == {"application_name": "psql", "database": "bank"}
        assert session["statements"] == 2 and session["errors"] == 1
        assert session["close_reason"] == "client_terminated"
        assert session["ended_at"] >= session["started_at"]
        events = store.session_events(sid)
        assert [e["kind"] for e in events] == [
            "session_open",
            "statement",
            "statement",
            "notice",
            "session_close",
        ]
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        first, second = events[1]["data"], events[2]["data"]
        assert first == {
            "kind": "query",
            "sql": "select 1",
            "statement_name": None,
            "portal": None,
            "params": None,
            "tags": ["SELECT 1"],
            "rows": 1,
            "status": "ok",
            "error": None,
            "duration_ms": 2.5,
        }
        assert second["params"] == ["42", None] and second["statement_name"] == "s1"
        assert second["error"] == {"sqlstate": "22P02", "message": "invalid input syntax"}
        assert store.get_session("nope") is None
        assert store.match_session_ids(sid[:10]) == [sid]
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # every event is chained (tests/test_audit_chain.py checks the hashes)
        assert conn.execute("SELECT count(*) FROM events WHERE length(hash) = 32").fetchone()[0] == 5
    finally:
        conn.close()


def test_flush_delay_is_bounded(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path / DB_FILE, flush_interval=0.1)
    try:
        with AuditStore.open(tmp_path) as reader:
            sid = writer.new_session_id()
            start = time.monotonic()
            writer.session_open(info(sid))
            while reader.get_session(sid) is None:
                assert time.monotonic() - start < 1.0, "not committed within the flush interval"
                time.sleep(0.005)
            # a second write right after a commit waits for the interval, then lands
            start = time.monotonic()
            writer.statement(sid, FakeStatement("select 2"))
            while len(reader.session_events(sid)) < 2:
                assert time.monotonic() - start < 1.0
                time.sleep(0.005)
            assert time.monotonic() - start < 0.5
    finally:
        writer.close()


def test_enqueue_never_blocks_and_overflow_is_recorded(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.5, max_queue=10, batch_size=10_000)
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    start = time.monotonic()
    for i in range(200):
        writer.statement(sid, FakeStatement(f"select {i}"))
    assert time.monotonic() - start < 0.5
    writer.session_close(sid, None)  # never dropped, even on overflow
    dropped = writer.dropped_total
    writer.close()
    assert dropped > 0
    with AuditStore.open(tmp_path) as store:
        events = store.session_events(sid)
        statements = [e for e in events if e["kind"] == "statement"]
        assert len(statements) + dropped == 200
        assert events[-1]["kind"] == "session_close"
        overflow = [e for e in store.events() if e["kind"] == "audit_overflow"]
        assert sum(e["data"]["dropped"] for e in overflow) == dropped
        session = store.get_session(sid)
        assert session is not None and session["status"] == "closed"
        assert session["statements"] == len(statements)


def test_many_statements_and_flush(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.2, batch_size=100)
    sids = [writer.new_session_id() for _ in range(3)]
    for sid in sids:
        writer.session_open(info(sid))
    for i in range(1000):
        writer.statement(sids[i % 3], FakeStatement(f"select {i}"))
    assert writer.flush(timeout=5)
    with AuditStore.open(tmp_path) as store:
        assert sum(s["statements"] for s in store.list_sessions()) == 1000
        assert [s["id"] for s in store.list_sessions(limit=2)] == sids[::-1][:2]
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(StoreError):
        writer.event(None, "late", {})


def test_duplicate_session_does_not_lose_the_batch(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.5)
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    writer.session_open(info(sid))  # a bug upstream: the same id twice
    writer.statement(sid, FakeStatement("select 1"))
    writer.close()
    assert writer.write_errors == 1
    with AuditStore.open(tmp_path) as store:
        assert [e["kind"] for e in store.session_events(sid)] == ["session_open", "statement"]


def test_session_ids_sortable_and_unique() -> None:
    ids = [new_session_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(is_session_id(i) and len(i) == 16 for i in ids)


def test_unopenable_store(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the audit store directory"):
        AuditWriter(blocker / "data", 0.1)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / DB_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open the audit store"):
        AuditStore.open(tmp_path / "d")
    with pytest.raises(StoreError, match="no audit store"):
        AuditStore.open(tmp_path / "empty", create=False)


def test_newer_schema_refused(tmp_path: Path) -> None:
    AuditStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        AuditStore.open(tmp_path)


def test_prompt_ids_on_events(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.05)
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    writer.statement(sid, FakeStatement("/* hoop:prompt=p1 */ select 1"), prompt_id="p1")
    writer.statement(sid, FakeStatement("select 2"))
    writer.event(sid, "approval_requested", {"request_id": "r1"}, prompt_id="p1")
    writer.event(sid, "notice", {"message": "x"})
    writer.session_close(sid, None)
    writer.close()
    with AuditStore.open(tmp_path) as store:
        events = store.session_events(sid)
        assert [e["prompt_id"] for e in events] == [None, "p1", None, "p1", None, None]
        tagged = store.prompt_events("p1")
        assert [(e["kind"], e["session_id"]) for e in tagged] == [
            ("statement", sid),
            ("approval_requested", sid),
        ]
        assert tagged[0]["data"]["sql"].startswith("/* hoop:prompt=p1 */")
        assert store.prompt_events("p2") == []
        assert [e["prompt_id"] for e in store.events()] == [e["prompt_id"] for e in events]
