"""Retention: purges (prefix cut, tombstones) keep the chain verifying; legal holds stop them; tampering
with what a purge left is still detected (docs/AUDIT.md "Retention and legal hold")."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest

from hoopgw.approvals import load_signing_key, verify_record
from hoopgw.approvals._records import RecordError
from hoopgw.audit import DB_FILE, AuditStore, AuditWriter, Report, _writer, open_readonly, verify_chain
from hoopgw.audit._chain import check_checkpoint, check_purge, record_json
from hoopgw.audit._retention import PurgeRefused, PurgeResult, append_event, hold, purge, release
from hoopgw.audit._schema import connect
from hoopgw.errors import StoreError

from ._support.procs import hoopgw
from .conftest import GatewayFactory
from .test_audit import FakeStatement, info

DAY = 86_400.0
LATER = time.time() + 10 * DAY  # "now" for purges: everything written by these tests is 10 days old
EVERY = 10  # a checkpoint every 10 events
ALL = {"*": 1}  # every kind expires after a day


class _Clock:
    """The writer's ``time`` module, ``offset`` seconds in the past (old events without sleeping)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() - self.offset

    def time_ns(self) -> int:
        return time.time_ns() - int(self.offset * 1e9)

    def monotonic(self) -> float:
        return time.monotonic()


@contextmanager
def days_ago(days: float) -> Iterator[_Clock]:
    clock = _Clock(days * DAY)
    with mock.patch.object(_writer, "time", clock):
        yield clock


def write_store(
    data_dir: Path, sessions: int = 3, statements: int = 12, clock: _Clock | None = None
) -> list[str]:
    """``sessions`` sessions of ``statements`` statements, a gateway-wide ``auth_failed`` event every 4
    statements, through the real writer (a checkpoint every 10 events, and when it closes)."""
    writer = AuditWriter(data_dir, flush_interval=0.01, checkpoint_every=EVERY)
    now_ns = clock.time_ns if clock is not None else time.time_ns
    ids = []
    for s in range(sessions):
        sid = writer.new_session_id()
        ids.append(sid)
        writer.session_open(info(sid))
        for i in range(statements):
            writer.statement(sid, FakeStatement(f"select {s}, {i}", started_ns=now_ns()))
            if i % 4 == 0:
                writer.event(None, "auth_failed", {"client_addr": f"10.0.{s}.{i}:5000", "user": "mallory"})
        writer.session_close(sid, "client_terminated")
    writer.close()
    return ids


def verify(data_dir: Path, **kw: int) -> Report:
    conn = open_readonly(data_dir / DB_FILE)
    try:
        return verify_chain(conn, load_signing_key(data_dir, create=False).public_key(), **kw)
    finally:
        conn.close()


def problem(data_dir: Path) -> tuple[int, str]:
    report = verify(data_dir)
    assert report.problem is not None, "tampering not detected"
    return report.problem.seq, report.problem.code


def run_purge(data_dir: Path, retention: dict[str, int], **kw: Any) -> PurgeResult:
    kw.setdefault("record_events", True)
    return purge(data_dir, retention, LATER, load_signing_key(data_dir), **kw)


def rows(data_dir: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def execute(data_dir: Path, sql: str, args: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(data_dir / DB_FILE, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def dump(data_dir: Path) -> list[str]:
    conn = sqlite3.connect(data_dir / DB_FILE)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path, write_store(tmp_path)


# --- purging ------------------------------------------------------------------------------------------


def test_prefix_purge_keeps_a_verifying_chain(store: tuple[Path, list[str]]) -> None:
    data_dir, ids = store
    (head,) = rows(data_dir, "SELECT max(seq) FROM events")[0]
    assert rows(data_dir, "SELECT max(seq) FROM checkpoints")[0][0] == head  # the writer sealed it all
    result = run_purge(data_dir, ALL)
    # everything expired: cut at the last checkpoint; its audit_purge event, appended first, stays
    assert (result.cut, result.deleted, result.tombstoned) == (head, head, 0)
    assert sum(result.kinds.values()) == head and result.kinds["auth_failed"] == 9
    assert result.sessions_deleted == len(ids)
    [record] = result.records
    assert record["type"] == "audit_purge" and record["cut"] == head and record["previous"] == 0
    assert rows(data_dir, "SELECT seq, kind FROM events") == [(head + 1, "audit_purge")]
    assert rows(data_dir, "SELECT count(*) FROM sessions") == [(0,)]
    report = verify(data_dir)
    assert report.ok, report.problem
    assert (report.anchor, report.purged_to, report.purges, report.first_seq) == (head, head, 1, head + 1)
    assert report.purged_by is not None and report.purged_by["id"] == 1
    assert any(f"purged: events up to seq {head} by purge 1" in n for n in report.notes)
    assert report.unsigned == 1  # the purge event appended offline waits for the writer's next checkpoint
    assert run_purge(data_dir, ALL).records == []  # nothing sealed is left to purge
    # the gateway writes on; the next purge cuts further, and the chain verifies from the newest cut
    more = write_store(data_dir, sessions=1)
    again = run_purge(data_dir, ALL)
    (sealed,) = rows(data_dir, "SELECT max(seq) FROM checkpoints")[0]
    assert again.cut == sealed and again.deleted == sealed - head and again.sessions_deleted == len(more)
    report = verify(data_dir)
    assert report.ok and report.anchor == sealed and report.purges == 2


def test_per_kind_tombstones_keep_a_verifying_chain(store: tuple[Path, list[str]]) -> None:
    data_dir, ids = store
    before = rows(data_dir, "SELECT seq, ts, session_id, kind, prompt_id, prev_hash, hash FROM events")
    failed = [s for (s,) in rows(data_dir, "SELECT seq FROM events WHERE kind = 'auth_failed' ORDER BY seq")]
    result = run_purge(data_dir, {"auth_failed": 1, "*": 3650})
    assert (result.cut, result.deleted, result.tombstoned, result.kinds) == (0, 0, 9, {"auth_failed": 9})
    [record] = result.records
    listed = [s for a, b in record["tombstoned"] for s in range(a, b + 1)]
    assert listed == failed and record["kinds"] == {"auth_failed": 9}
    assert record["retention"] == {"*": 3650, "auth_failed": 1}
    # the rows stay, every column but data as it was; data reads as the purge's marker
    after = rows(data_dir, "SELECT seq, ts, session_id, kind, prompt_id, prev_hash, hash FROM events")
    assert after[: len(before)] == before
    assert {d for (d,) in rows(data_dir, "SELECT data FROM events WHERE kind = 'auth_failed'")} == {
        '{"purged":1}'
    }
    report = verify(data_dir)
    assert report.ok, report.problem
    assert report.tombstones == 9 and report.anchor is None and report.first_seq == 1
    with AuditStore.open(data_dir, create=False) as audit:
        events = audit.events()
        assert [e["data"] for e in events if e["kind"] == "auth_failed"] == [{"purged": 1}] * 9
        assert audit.get_session(ids[0]) is not None  # sessions untouched
    # nothing more to purge: the next run writes no record
    assert run_purge(data_dir, {"auth_failed": 1, "*": 3650}).records == []


def test_dry_run_changes_nothing(store: tuple[Path, list[str]]) -> None:
    data_dir, ids = store
    hold(data_dir, ids[1], reason="case 1", by="counsel")
    before = dump(data_dir)
    planned = run_purge(data_dir, ALL, dry_run=True)
    assert dump(data_dir) == before
    assert planned.dry_run and planned.records == [] and planned.deleted > 0 and planned.tombstoned > 0
    done = run_purge(data_dir, ALL, batch=7)  # in several steps: the same in the end
    assert len(done.records) > 1
    assert (planned.cut, planned.deleted, planned.tombstoned, planned.kinds, planned.held) == (
        done.cut,
        done.deleted,
        done.tombstoned,
        done.kinds,
        done.held,
    )
    assert verify(data_dir).ok


def test_the_unsigned_tail_is_never_touched(store: tuple[Path, list[str]]) -> None:
    data_dir, _ = store
    conn = connect(data_dir / DB_FILE, create=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        tail = [append_event(conn, time.time() - 30 * DAY, None, "auth_failed", {"n": i}) for i in range(3)]
        conn.execute("COMMIT")
    finally:
        conn.close()
    (sealed,) = rows(data_dir, "SELECT max(seq) FROM checkpoints")[0]
    assert min(tail) == sealed + 1
    result = run_purge(data_dir, ALL, record_events=False)
    assert result.sealed == sealed and result.cut == sealed
    kept = rows(data_dir, "SELECT seq, data FROM events WHERE seq > ? ORDER BY seq", (sealed,))
    assert [s for s, _ in kept] == tail and all("purged" not in d for _, d in kept)
    report = verify(data_dir)
    assert report.ok and report.unsigned == 3


def test_purge_refuses_to_erase_tampered_events(store: tuple[Path, list[str]]) -> None:
    data_dir, _ = store
    execute(data_dir, "UPDATE events SET data = replace(data, 'select', 'delete') WHERE seq = 5")
    before = dump(data_dir)
    with pytest.raises(PurgeRefused, match=r"seq 5, changed"):
        run_purge(data_dir, ALL)
    assert dump(data_dir) == before  # the evidence of tampering is left as it was


def test_purge_while_the_writer_appends(tmp_path: Path) -> None:
    write_store(tmp_path, sessions=2)
    writer = AuditWriter(tmp_path, flush_interval=0.005, checkpoint_every=EVERY)
    stop = threading.Event()

    def append() -> None:
        n = 0
        while not stop.is_set():
            writer.event(None, "notice", {"n": n})
            n += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=append)
    thread.start()
    results = []
    try:
        for _ in range(6):
            time.sleep(0.05)
            results.append(run_purge(tmp_path, {"notice": 1, "*": 1}, batch=25))
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert sum(r.deleted for r in results) > 0 and len({r.cut for r in results}) > 1
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert report.unsigned == 0 and report.purges == sum(len(r.records) for r in results)


# --- legal hold ----------------------------------------------------------------------------------------


def test_legal_hold_blocks_purging_until_released(store: tuple[Path, list[str]]) -> None:
    data_dir, ids = store
    held = ids[1]
    out = hold(data_dir, held, reason="case 2026-17", by="counsel")
    assert out["set_by"] == "counsel" and out["reason"] == "case 2026-17"
    with pytest.raises(StoreError, match="already under legal hold"):
        hold(data_dir, held, reason="again", by="counsel")
    with pytest.raises(StoreError, match="no session"):
        hold(data_dir, "nope", reason="x", by="counsel")
    original = rows(data_dir, "SELECT seq, data FROM events WHERE session_id = ? ORDER BY seq", (held,))
    assert original[-1][1] == '{"by":"counsel","reason":"case 2026-17"}'  # legal_hold_set, in the chain
    result = run_purge(data_dir, ALL)
    assert result.held == 1
    first_held = original[0][0]
    assert result.cut < first_held  # the prefix stops before the held session's first event
    assert (
        rows(data_dir, "SELECT seq, data FROM events WHERE session_id = ? ORDER BY seq", (held,)) == original
    )
    # expired events of other sessions after the cut lost their data; gateway-wide ones too
    others = rows(data_dir, "SELECT kind, data FROM events WHERE seq > ? AND seq < ? AND session_id IS NOT ?",
                  (first_held, original[-2][0], held))  # fmt: skip
    assert others and all(d.startswith('{"purged":') for _, d in others)
    with AuditStore.open(data_dir, create=False) as audit:
        session = audit.get_session(held)
        assert session is not None and session["legal_hold"]["set_by"] == "counsel"
        listed = {s["id"]: s["legal_hold"] for s in audit.list_sessions()}
        assert listed[held] is not None and listed[ids[2]] is None
    assert verify(data_dir).ok
    released = release(data_dir, held, by="counsel")
    assert released["released_by"] == "counsel"
    with pytest.raises(StoreError, match="not under legal hold"):
        release(data_dir, held, by="counsel")
    after = run_purge(data_dir, ALL)
    assert after.held == 0 and after.cut > first_held
    kinds = [k for (k,) in rows(data_dir, "SELECT kind FROM events WHERE session_id = ?", (held,))]
    assert "statement" not in kinds  # gone now, but for the hold events after the cut
    report = verify(data_dir)
    assert report.ok, report.problem


# --- tampering with what a purge left -------------------------------------------------------------------


@pytest.mark.parametrize(
    "lift",
    ["UPDATE legal_holds SET released_at = 1, released_by = 'counsel'", "DELETE FROM legal_holds"],
)
def test_a_hold_lifted_in_the_table_alone_still_holds(store: tuple[Path, list[str]], lift: str) -> None:
    """The legal_holds table is an index anyone with the file can edit; the chain's legal_hold_set
    event, without a legal_hold_released after it, keeps the session's events."""
    data_dir, ids = store
    held = ids[1]
    hold(data_dir, held, reason="litigation", by="counsel")
    original = rows(data_dir, "SELECT seq, data FROM events WHERE session_id = ? ORDER BY seq", (held,))
    execute(data_dir, lift)
    result = run_purge(data_dir, ALL)
    assert result.held == 1
    after = rows(data_dir, "SELECT seq, data FROM events WHERE session_id = ? ORDER BY seq", (held,))
    assert after == original
    assert verify(data_dir).ok


def test_a_deleted_hold_event_stops_the_purge(store: tuple[Path, list[str]]) -> None:
    data_dir, ids = store
    held = ids[0]
    hold(data_dir, held, reason="litigation", by="counsel")
    AuditWriter(data_dir, flush_interval=0.01, checkpoint_every=EVERY).close()  # seals the hold event
    original = rows(data_dir, "SELECT count(*) FROM events WHERE session_id = ?", (held,))
    execute(data_dir, "DELETE FROM events WHERE kind = 'legal_hold_set'")
    execute(data_dir, "DELETE FROM legal_holds")
    with pytest.raises(PurgeRefused, match="missing"):
        run_purge(data_dir, ALL)
    left = rows(data_dir, "SELECT count(*) FROM events WHERE session_id = ?", (held,))
    assert left[0][0] == original[0][0] - 1  # only the deleted event is gone


@pytest.fixture
def purged(store: tuple[Path, list[str]]) -> Path:
    """A store with a prefix cut at seq 10 (purge 1: up to the first session_close, which stays, and
    tombstones after it, but for the third session, under legal hold) and more tombstones (purge 2:
    the session_close events)."""
    data_dir, ids = store
    hold(data_dir, ids[2], reason="kept intact for the tampering tests", by="tests")
    (first_close,) = rows(data_dir, "SELECT min(seq) FROM events WHERE kind = 'session_close'")[0]
    one = run_purge(data_dir, {"session_open": 1, "statement": 1, "auth_failed": 1})
    assert one.cut == EVERY and first_close < 2 * EVERY and one.tombstoned > 0
    two = run_purge(data_dir, {"session_close": 1, "*": 3650})
    assert two.tombstoned == 2 and two.cut == EVERY
    assert verify(data_dir).ok
    return data_dir


def _tombstones(data_dir: Path, purge_id: int | None = None) -> list[int]:
    pattern = '{"purged":*' if purge_id is None else f'{{"purged":{purge_id}}}'
    return [s for (s,) in rows(data_dir, "SELECT seq FROM events WHERE data GLOB ? ORDER BY seq", (pattern,))]


def test_edit_a_remaining_event(purged: Path) -> None:
    (seq,) = rows(purged, "SELECT min(seq) FROM events WHERE kind = 'statement' AND data LIKE '%select%'")[0]
    execute(purged, "UPDATE events SET data = replace(data, 'select', 'delete') WHERE seq = ?", (seq,))
    assert problem(purged) == (seq, "changed")


def test_delete_a_tombstoned_row(purged: Path) -> None:
    seq = _tombstones(purged)[1]
    execute(purged, "DELETE FROM events WHERE seq = ?", (seq,))
    assert problem(purged) == (seq, "missing")


def test_forge_a_tombstone(purged: Path) -> None:
    (seq,) = rows(purged, "SELECT max(seq) FROM events WHERE kind = 'statement'")[0]
    execute(purged, "UPDATE events SET data = '{\"purged\":2}' WHERE seq = ?", (seq,))
    assert problem(purged) == (seq, "purged_unsigned")


def test_edit_the_kept_columns_of_a_tombstone(purged: Path) -> None:
    seq = _tombstones(purged, 2)[0]
    execute(purged, "UPDATE events SET session_id = 'someone else' WHERE seq = ?", (seq,))
    report = verify(purged)
    assert report.problem is not None and report.problem.code == "tombstone_changed"
    assert report.problem.purge == 2


def test_put_other_data_in_a_tombstone(purged: Path) -> None:
    seq = _tombstones(purged)[0]
    execute(purged, 'UPDATE events SET data = \'{"user":"bob"}\' WHERE seq = ?', (seq,))
    assert problem(purged) == (seq, "tombstone_changed")


def test_edit_a_purge_record(purged: Path) -> None:
    (raw,) = rows(purged, "SELECT record FROM purges WHERE id = 2")[0]
    record = orjson.loads(raw)
    record["tombstoned"] = record["tombstoned"] + [[9000, 9001]]
    execute(purged, "UPDATE purges SET record = ? WHERE id = 2", (record_json(record),))
    report = verify(purged)
    assert report.problem is not None and (report.problem.code, report.problem.purge) == ("purge_invalid", 2)


def test_edit_a_purge_signature(purged: Path) -> None:
    (raw,) = rows(purged, "SELECT record FROM purges WHERE id = 1")[0]
    record = orjson.loads(raw)
    sig = record["signature"]["sig"]
    record["signature"]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    execute(purged, "UPDATE purges SET record = ? WHERE id = 1", (record_json(record),))
    report = verify(purged)
    assert report.problem is not None and report.problem.code == "purge_invalid"
    assert "bad signature" in report.problem.message


def test_edit_a_purge_column(purged: Path) -> None:
    execute(purged, "UPDATE purges SET cut = 0 WHERE id = 1")
    report = verify(purged)
    assert report.problem is not None and (report.problem.code, report.problem.purge) == ("purge_changed", 1)


def test_delete_the_first_purge_record(purged: Path) -> None:
    execute(purged, "DELETE FROM purges WHERE id = 1")
    report = verify(purged)
    assert report.problem is not None and (report.problem.code, report.problem.purge) == ("purge_missing", 1)


def test_delete_the_last_purge_record(purged: Path) -> None:
    execute(purged, "DELETE FROM purges WHERE id = 2")
    assert problem(purged) == (_tombstones(purged, 2)[0], "purged_unsigned")


def test_delete_a_cutting_purge_record_when_it_is_the_last(store: tuple[Path, list[str]]) -> None:
    data_dir, _ = store
    run_purge(data_dir, ALL, batch=EVERY, record_events=False)
    execute(data_dir, "DELETE FROM purges")
    assert problem(data_dir) == (1, "missing")  # no signed record explains the cut


def test_an_audit_purge_event_names_a_deleted_record(purged: Path) -> None:
    conn = connect(purged / DB_FILE, create=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        seq = append_event(conn, time.time(), None, "audit_purge", {"purge": 3, "cut": 40})
        conn.execute("COMMIT")
    finally:
        conn.close()
    report = verify(purged)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code, report.problem.purge) == (seq, "purge_missing", 3)


def test_reinsert_an_event_before_the_cut(purged: Path) -> None:
    (seq, ts, sid, kind, data, prev, digest) = rows(
        purged, "SELECT seq, ts, session_id, kind, data, prev_hash, hash FROM events ORDER BY seq LIMIT 1"
    )[0]
    execute(
        purged,
        "INSERT INTO events (seq, ts, session_id, kind, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq - 1, ts, sid, kind, data, prev, digest),
    )
    assert problem(purged) == (seq - 1, "inserted")


def test_delete_the_checkpoint_at_the_cut(purged: Path) -> None:
    execute(purged, "DELETE FROM checkpoints WHERE seq = ?", (EVERY,))
    report = verify(purged)
    assert report.problem is not None and report.problem.code == "checkpoint_missing"
    assert report.problem.seq == EVERY


def test_a_purge_record_is_neither_a_checkpoint_nor_an_approval(purged: Path) -> None:
    (raw,) = rows(purged, "SELECT record FROM purges WHERE id = 1")[0]
    record = orjson.loads(raw)
    public = load_signing_key(purged).public_key()
    check_purge(public, record)
    with pytest.raises(RecordError) as exc:
        check_checkpoint(public, record)
    assert exc.value.code in ("extra_field", "missing_field", "unknown_type")
    with pytest.raises(RecordError):
        verify_record(public, record)


def test_a_tail_deleted_with_its_checkpoints_after_a_purge(purged: Path) -> None:
    """A purge record names the last checkpoint it saw: deleting the tail behind it is noticed."""
    (sealed,) = rows(purged, "SELECT max(seq) FROM checkpoints")[0]
    execute(purged, "DELETE FROM events WHERE seq > ?", (sealed - 5,))
    execute(purged, "DELETE FROM checkpoints WHERE seq > ?", (sealed - 5,))
    report = verify(purged)
    assert report.problem is not None and report.problem.code == "truncated"


# --- the commands ----------------------------------------------------------------------------------------


def _config(data_dir: Path, retention: dict[str, int]) -> Path:
    path = data_dir.parent / "gw.toml"
    days = ", ".join(f'"{k}" = {v}' for k, v in retention.items())
    path.write_text(
        f'[gateway]\ndata_dir = "{data_dir}"\n\n[audit]\nretention_days = {{ {days} }}\n\n'
        '[[connections]]\nname = "db"\ntype = "postgres"\nlisten = "127.0.0.1:15432"\n'
        'upstream = "postgresql://app@127.0.0.1:5432/bank"\n'
    )
    return path


def test_cli_purge_hold_and_verify(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    with days_ago(40) as clock:
        ids = write_store(data_dir, clock=clock)
    config = _config(data_dir, {"auth_failed": 1, "*": 30})
    held = hoopgw("sessions", "hold", ids[2], "--reason", "subpoena 7", "--by", "legal", "-c", config)
    assert held.returncode == 0, held.stderr
    assert f"legal hold set on session {ids[2]} by legal: subpoena 7" in held.stdout
    before = dump(data_dir)
    dry = hoopgw("audit", "purge", "--dry-run", "--json", "-c", config)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["deleted"] > 0 and planned["held"] == 1
    assert dump(data_dir) == before
    done = hoopgw("audit", "purge", "-c", config)
    assert done.returncode == 0, done.stderr
    assert f"deleted: {planned['deleted']} events" in done.stdout
    assert "legal hold: 1 session kept expired events" in done.stdout
    result = hoopgw("audit", "verify", "-c", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "purged: events up to seq" in result.stdout and "purges: 1 signed purge record" in result.stdout
    listed = {s["id"]: s for s in json.loads(hoopgw("sessions", "list", "--json", "-c", config).stdout)}
    assert ids[0] not in listed  # purged whole; the second session's last events are tombstones
    assert listed[ids[2]]["legal_hold"]["reason"] == "subpoena 7" and listed[ids[1]]["legal_hold"] is None
    shown = hoopgw("sessions", "show", ids[2], "-c", config)
    assert "legal hold  set by legal" in shown.stdout
    table = hoopgw("sessions", "list", "-c", config)
    assert "HOLD" in table.stdout and "legal" in table.stdout
    freed = hoopgw("sessions", "release", ids[2], "--by", "legal", "-c", config)
    assert freed.returncode == 0 and "released by legal" in freed.stdout
    again = hoopgw("audit", "purge", "--json", "-c", config)
    assert again.returncode == 0 and json.loads(again.stdout)["held"] == 0
    # tamper with what is left: still detected
    conn = sqlite3.connect(data_dir / DB_FILE, isolation_level=None)
    (seq,) = conn.execute("SELECT max(seq) FROM events WHERE kind = 'legal_hold_set'").fetchone()
    conn.execute("UPDATE events SET ts = ts + 1 WHERE seq = ?", (seq,))
    conn.close()
    failed = hoopgw("audit", "verify", "-c", config)
    assert failed.returncode == 1 and failed.stdout.startswith(f"FAILED at seq {seq} (")


def test_cli_purge_without_retention(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    write_store(data_dir, sessions=1)
    config = _config(data_dir, {})
    result = hoopgw("audit", "purge", "-c", config)
    assert result.returncode == 0 and "retention_days is not set" in result.stdout


def test_a_gateway_purges_on_its_own(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(extra={"audit": {"retention_days": {"*": 30}, "purge_interval": 1}}, start=False)
    with days_ago(40) as clock:
        write_store(gw.data_dir, sessions=2, clock=clock)
    gw.start()
    res = gw.psql("SELECT 1;")
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 15
    while not rows(gw.data_dir, "SELECT 1 FROM events WHERE kind = 'audit_purge'"):
        assert time.monotonic() < deadline, "the gateway did not purge"
        time.sleep(0.2)
    assert gw.stop() == 0
    (payload,) = rows(gw.data_dir, "SELECT data FROM events WHERE kind = 'audit_purge'")[0]
    assert json.loads(payload)["purge"] == 1 and json.loads(payload)["deleted"] > 0
    result = gw.run_cli("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "purged: events up to seq" in result.stdout and "not signed yet" not in result.stdout
