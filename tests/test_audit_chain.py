"""The audit hash chain and its signed checkpoints: written by the real AuditWriter, tampered with on
the SQLite file, caught by ``verify_chain`` and ``hoopgw audit verify`` at the first bad event."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.approvals import canonical, key_id, load_signing_key, public_key_pem
from hoopgw.approvals._signing import b64url
from hoopgw.audit import DB_FILE, AuditWriter, Report, open_readonly, verify_chain
from hoopgw.audit._chain import GENESIS, event_hash, hash_text

from ._support.gateway import Gateway
from ._support.procs import hoopgw
from .conftest import GatewayFactory
from .test_audit import FakeStatement, info

STATEMENTS = 50
EVERY = 10  # a checkpoint every 10 events
TOTAL = STATEMENTS + 2  # session_open, the statements, session_close


def write_store(data_dir: Path, statements: int = STATEMENTS, **kw: object) -> None:
    """One session of ``statements`` statements through the real writer (checkpoints every 10 events)."""
    # kw: the writer's checkpoint options a test varies (checkpoint_every, checkpoint_interval, ...)
    writer = AuditWriter(data_dir, flush_interval=0.01, checkpoint_every=EVERY, **kw)  # type: ignore[arg-type]
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    for i in range(statements):
        writer.statement(sid, FakeStatement(f"select {i}"), prompt_id="p1" if i % 5 == 0 else None)
    writer.session_close(sid, "client_terminated")
    writer.close()


def verify(data_dir: Path, **kw: int | float) -> Report:
    conn = open_readonly(data_dir / DB_FILE)
    try:
        # kw: verify_chain's keyword options a test passes (since_seq, since_ts)
        return verify_chain(conn, load_signing_key(data_dir, create=False).public_key(), **kw)  # type: ignore[arg-type]
    finally:
        conn.close()


def problem(data_dir: Path, **kw: int | float) -> tuple[int, str]:
    report = verify(data_dir, **kw)
    assert report.problem is not None, "tampering not detected"
    return report.problem.seq, report.problem.code


@pytest.fixture
def store(tmp_path: Path) -> Path:
    write_store(tmp_path)
    return tmp_path


@pytest.fixture
def db(store: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(store / DB_FILE, isolation_level=None)
    yield conn
    conn.close()


def row_hash(db: sqlite3.Connection, seq: int) -> bytes:
    value: bytes = db.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()[0]
    return value


def renumber_after(db: sqlite3.Connection, seq: int, by: int) -> None:
    """Shift the seq of every event after ``seq`` by ``by`` (two steps: seq is the primary key)."""
    db.execute("UPDATE events SET seq = seq + 1000000 WHERE seq > ?", (seq,))
    db.execute("UPDATE events SET seq = seq - 1000000 + ? WHERE seq > 1000000", (by,))


def rehash_from(db: sqlite3.Connection, seq: int) -> None:
    """Recompute every hash from event ``seq`` on, as an attacker who knows the encoding would."""
    prev = row_hash(db, seq - 1) if seq > 1 else GENESIS
    rows = db.execute(
        "SELECT seq, ts, session_id, kind, data, prompt_id FROM events WHERE seq >= ? ORDER BY seq", (seq,)
    ).fetchall()
    for s, ts, sid, kind, data, pid in rows:
        digest = event_hash(s, ts, _b(sid), kind.encode(), data.encode(), _b(pid), prev)
        db.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, s))
        prev = digest


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


# --- a clean chain ----------------------------------------------------------------------------------------


def test_clean_chain_verifies(store: Path) -> None:
    report = verify(store)
    assert report.ok, report.problem
    assert (report.events, report.first_seq, report.last_seq) == (TOTAL, 1, TOTAL)
    # every 10 events, and the rest when the writer closed
    assert report.checkpoints == TOTAL // EVERY + 1
    assert report.last_checkpoint is not None and report.last_checkpoint["seq"] == TOTAL
    assert report.last_checkpoint["events"] == TOTAL and report.unsigned == 0
    assert report.last_checkpoint["key_id"] == key_id(load_signing_key(store).public_key())
    conn = sqlite3.connect(store / DB_FILE)
    try:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY seq")]
        assert kinds[0] == "session_open" and kinds[-1] == "session_close"  # sessions are in the chain
        seqs = [s for (s,) in conn.execute("SELECT seq FROM checkpoints ORDER BY seq")]
        assert seqs == [10, 20, 30, 40, 50, 52]
        first_prev, first_hash = conn.execute("SELECT prev_hash, hash FROM events WHERE seq = 1").fetchone()
        assert first_prev == GENESIS and len(first_hash) == 32
    finally:
        conn.close()


def test_hash_encoding_is_pinned() -> None:
    """docs/AUDIT.md's encoding, byte for byte: a change here breaks every stored chain."""
    digest = event_hash(7, 1700000000.25, b"s1", b"statement", b'{"sql":"select 1"}', None, GENESIS)
    assert digest.hex() == "9498fdeb5a6ede3fa95625fd2ba2cbe9469a1c65042d7eb8294c49a54be6f406"
    tagged = event_hash(7, 1700000000.25, b"s1", b"statement", b'{"sql":"select 1"}', b"p-1", GENESIS)
    assert tagged.hex() == "67895feaaa18bdb942707b7a51b0771f20e051ce218a00a1e3088641ba446092"
    # NULL and the empty string differ; so do the same bytes split between two fields
    assert event_hash(7, 1.0, None, b"k", b"{}", None, GENESIS) != event_hash(
        7, 1.0, b"", b"k", b"{}", None, GENESIS
    )
    assert event_hash(7, 1.0, b"ab", b"c", b"{}", None, GENESIS) != event_hash(
        7, 1.0, b"a", b"bc", b"{}", None, GENESIS
    )


def test_checkpoints_every_n_events_within_one_large_batch(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=5, batch_size=100_000, checkpoint_every=100)
    for i in range(1000):
        writer.event(None, "tick", {"i": i})
    writer.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    seqs = [s for (s,) in conn.execute("SELECT seq FROM checkpoints ORDER BY seq")]
    conn.close()
    assert seqs == list(range(100, 1001, 100))
    assert verify(tmp_path).ok


def test_checkpoint_after_the_interval_without_more_events(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.01, checkpoint_every=1000, checkpoint_interval=0.3)
    try:
        writer.event(None, "tick", {})
        writer.event(None, "tick", {})
        assert writer.flush(5)
        report = verify(tmp_path)
        assert report.ok and report.unsigned == 2 and report.last_checkpoint is None
        deadline = time.monotonic() + 5
        while writer.checkpoints_total == 0:
            assert time.monotonic() < deadline, "no checkpoint after the interval"
            time.sleep(0.02)
        report = verify(tmp_path)
        assert report.ok and report.unsigned == 0
        assert report.last_checkpoint is not None and report.last_checkpoint["seq"] == 2
        writer.event(None, "tick", {})
    finally:
        writer.close()
    assert verify(tmp_path).checkpoints == 2


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    write_store(tmp_path, statements=13)
    write_store(tmp_path, statements=21)
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert report.events == 15 + 23 and report.unsigned == 0
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        assert (
            conn.execute("SELECT prev_hash FROM events WHERE seq = 16").fetchone()[0]
            == conn.execute("SELECT hash FROM events WHERE seq = 15").fetchone()[0]
        )
        records = [json.loads(r) for (r,) in conn.execute("SELECT record FROM checkpoints ORDER BY seq")]
    finally:
        conn.close()
    # each checkpoint names the one before, across the restart
    assert [r["previous"] for r in records] == [0] + [r["seq"] for r in records[:-1]]
    assert [r["seq"] for r in records] == [10, 15, 25, 35, 38]


def test_events_older_than_the_chain_are_reported_not_covered(tmp_path: Path) -> None:
    AuditWriter(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    conn.executemany(
        "INSERT INTO events (ts, kind, data) VALUES (?, 'old', '{}')", [(time.time(),) for _ in range(3)]
    )
    conn.close()
    write_store(tmp_path, statements=8)
    report = verify(tmp_path)
    assert report.ok, report.problem
    assert (report.unchained, report.events, report.first_seq) == (3, 10, 4)
    # removing the hashes of chained events does not pass them off as older ones
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    conn.execute("UPDATE events SET prev_hash = NULL, hash = NULL WHERE seq IN (4, 5)")
    conn.close()
    assert problem(tmp_path) == (1, "unchained")


def test_since_starts_from_a_signed_checkpoint(store: Path, db: sqlite3.Connection) -> None:
    report = verify(store, since_seq=35)
    assert report.ok and report.anchor == 30 and report.events == TOTAL - 30
    assert verify(store, since_seq=1).anchor is None  # nothing before event 1: from the start
    assert verify(store, since_ts=time.time() + 60).anchor == TOTAL  # the last checkpoint written by then
    assert verify(store, since_ts=time.time() - 3600).anchor is None  # none yet: from the start
    db.execute("UPDATE events SET data = '{}' WHERE seq = 41")
    assert problem(store, since_seq=35) == (41, "changed")
    # a forged anchor is refused, not trusted
    db.execute("UPDATE checkpoints SET events = 31 WHERE seq = 30")
    assert problem(store, since_seq=35) == (30, "checkpoint_changed")


def test_verify_reads_a_snapshot_while_the_writer_runs(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.005, checkpoint_every=50)
    try:
        for i in range(2000):
            writer.event(None, "tick", {"i": i})
            if i % 500 == 0:
                report = verify(tmp_path)
                assert report.ok, report.problem
    finally:
        writer.close()
    assert verify(tmp_path).events == 2000


# --- tampering, each caught at the first bad event ------------------------------------------------------


def test_edit_data(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET data = replace(data, 'select 15', 'select 99') WHERE seq = 17")
    assert db.total_changes == 1
    assert problem(store) == (17, "changed")


def test_edit_ts(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET ts = ts + 3600 WHERE seq = 23")
    assert problem(store) == (23, "changed")


def test_edit_session_and_prompt_ids(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET prompt_id = NULL WHERE seq = 12 AND prompt_id = 'p1'")
    assert db.total_changes == 1
    assert problem(store) == (12, "changed")


def test_edit_and_recompute_that_hash(store: Path, db: sqlite3.Connection) -> None:
    ts, sid, kind, prev = db.execute(
        "SELECT ts, session_id, kind, prev_hash FROM events WHERE seq = 8"
    ).fetchone()
    data = b'{"sql":"select nothing"}'
    db.execute(
        "UPDATE events SET data = ?, hash = ? WHERE seq = 8",
        (data.decode(), event_hash(8, ts, sid.encode(), kind.encode(), data, None, prev)),
    )
    assert problem(store) == (8, "changed")


def test_edit_and_recompute_the_rest_of_the_chain(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET data = '{}' WHERE seq = 25")
    rehash_from(db, 25)
    report = verify(store)
    assert report.problem is not None
    # only a signature tells: the first possible event is the one after the last good checkpoint
    assert (report.problem.seq, report.problem.code, report.problem.checkpoint) == (21, "rewritten", 30)


def test_delete_a_middle_event(store: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq = 30")
    assert problem(store) == (30, "missing")


def test_delete_a_middle_event_and_renumber(store: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq = 30")
    renumber_after(db, 30, -1)
    assert problem(store) == (30, "unlinked")


def test_delete_the_first_event(store: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq <= 3")
    assert problem(store) == (1, "missing")


def test_delete_a_checkpointed_tail(store: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq > 45")
    report = verify(store)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code, report.problem.checkpoint) == (46, "truncated", 50)


def test_delete_a_tail_with_its_checkpoints_is_not_detectable(store: Path, db: sqlite3.Connection) -> None:
    """The documented limit (docs/AUDIT.md): a tail deleted with its checkpoints leaves a valid chain."""
    db.execute("DELETE FROM events WHERE seq > 40")
    db.execute("DELETE FROM checkpoints WHERE seq > 40")
    report = verify(store)
    assert report.ok and report.last_seq == 40
    assert report.last_checkpoint is not None and report.last_checkpoint["seq"] == 40


def test_insert_a_forged_event(store: Path, db: sqlite3.Connection) -> None:
    renumber_after(db, 20, 1)
    prev = row_hash(db, 20)
    data = b'{"sql":"select forged"}'
    forged = event_hash(21, 1.5, None, b"statement", data, None, prev)
    db.execute(
        "INSERT INTO events (seq, ts, session_id, kind, data, prev_hash, hash) VALUES (21, 1.5, NULL,"
        " 'statement', ?, ?, ?)",
        (data.decode(), prev, forged),
    )
    assert problem(store) == (21, "inserted")  # the next event links past it
    db.execute("UPDATE events SET hash = ? WHERE seq = 21", (bytes(32),))
    assert problem(store) == (21, "changed")


def test_insert_a_forged_event_and_recompute_the_chain(store: Path, db: sqlite3.Connection) -> None:
    renumber_after(db, 33, 1)
    db.execute("INSERT INTO events (seq, ts, kind, data) VALUES (34, 1.0, 'statement', '{}')")
    rehash_from(db, 34)
    assert problem(store) == (31, "rewritten")


def test_swap_two_events(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET seq = -1 WHERE seq = 12")
    db.execute("UPDATE events SET seq = 12 WHERE seq = 13")
    db.execute("UPDATE events SET seq = 13 WHERE seq = -1")
    assert problem(store) == (12, "reordered")


def test_edit_a_checkpoint_hash(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE checkpoints SET hash = ? WHERE seq = 30", (bytes(32),))
    report = verify(store)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code, report.problem.checkpoint) == (
        30,
        "checkpoint_changed",
        30,
    )


def test_edit_a_checkpoint_record(store: Path, db: sqlite3.Connection) -> None:
    (raw,) = db.execute("SELECT record FROM checkpoints WHERE seq = 30").fetchone()
    record = json.loads(raw)
    record["hash"] = hash_text(bytes(32))
    db.execute(
        "UPDATE checkpoints SET hash = ?, record = ? WHERE seq = 30",
        (bytes(32), orjson.dumps(record).decode()),
    )
    assert problem(store) == (30, "checkpoint_invalid")


def _resign(
    db: sqlite3.Connection, seq: int, key: Ed25519PrivateKey, *, kid: str | None = None, **changes: object
) -> None:
    (raw,) = db.execute("SELECT record FROM checkpoints WHERE seq = ?", (seq,)).fetchone()
    record = json.loads(raw)
    body = {k: v for k, v in record.items() if k != "signature"} | changes
    body["key_id"] = kid or key_id(key.public_key())
    signed = {
        **body,
        "signature": {"alg": "EdDSA", "kid": body["key_id"], "sig": b64url(key.sign(canonical(body)))},
    }
    db.execute(
        "UPDATE checkpoints SET record = ?, hash = ?, events = ? WHERE seq = ?",
        (orjson.dumps(signed).decode(), bytes.fromhex(body["hash"][7:]), body["events"], seq),
    )


def test_forge_a_checkpoint_signature(store: Path, db: sqlite3.Connection) -> None:
    # the events rewritten and the chain recomputed, the checkpoint re-signed: by another key
    db.execute("UPDATE events SET data = '{}' WHERE seq = 25")
    rehash_from(db, 25)
    head = hash_text(row_hash(db, 30))
    other = Ed25519PrivateKey.generate()
    gateway_kid = key_id(load_signing_key(store).public_key())
    _resign(db, 30, other, kid=gateway_kid, hash=head)
    assert problem(store) == (30, "checkpoint_invalid")
    _resign(db, 30, other, hash=head)  # its own key id
    report = verify(store)
    assert report.problem is not None and report.problem.code == "checkpoint_invalid"
    assert "unknown key" in report.problem.message


def test_the_right_key_signs_what_the_chain_holds(store: Path, db: sqlite3.Connection) -> None:
    """The test above fails for the signature alone: re-signed by the gateway's key, it verifies."""
    _resign(db, 30, load_signing_key(store))
    assert verify(store).ok
    _resign(db, 30, load_signing_key(store), events=29)
    assert problem(store) == (30, "checkpoint_count")


def test_delete_a_middle_checkpoint(store: Path, db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM checkpoints WHERE seq = 20")
    report = verify(store)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (20, "checkpoint_missing")


def test_wrong_types_in_a_row(store: Path, db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET data = x'ff00' WHERE seq = 9")  # a blob, not UTF-8 text
    assert problem(store) == (9, "changed")
    db.execute("UPDATE events SET ts = 'yesterday' WHERE seq = 9")
    assert problem(store) == (9, "malformed")


# --- the command ---------------------------------------------------------------------------------------


def _config(data_dir: Path) -> Path:
    path = data_dir.parent / "gw.toml"
    path.write_text(
        f'[gateway]\ndata_dir = "{data_dir}"\n\n[[connections]]\nname = "db"\ntype = "postgres"\n'
        'listen = "127.0.0.1:15432"\nupstream = "postgresql://app@127.0.0.1:5432/bank"\n'
    )
    return path


def test_cli_verify_offline(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    write_store(data_dir)
    config = _config(data_dir)
    result = hoopgw("audit", "verify", "-c", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: {TOTAL} events (seq 1..{TOTAL}) verified")
    assert f"checkpoints: 6 verified; last at seq {TOTAL}" in result.stdout
    # an examiner's copy: the public key given, not read from data_dir
    pem = tmp_path / "gateway.pem"
    pem.write_text(public_key_pem(load_signing_key(data_dir).public_key()))
    result = hoopgw("audit", "verify", "-c", config, "--public-key", pem, "--json", "--since", "25")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] is True and out["anchor"] == 20 and out["events"] == TOTAL - 20
    conn = sqlite3.connect(data_dir / DB_FILE, isolation_level=None)
    conn.execute("UPDATE events SET ts = ts + 1 WHERE seq = 33")
    conn.close()
    result = hoopgw("audit", "verify", "-c", config)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED at seq 33 (changed): event 33 was changed")
    assert "verified before it: 32 events (seq 1..32)" in result.stdout
    out = json.loads(hoopgw("audit", "verify", "-c", config, "--json").stdout)
    assert out["ok"] is False and out["problem"]["seq"] == 33 and out["events"] == 32
    other = tmp_path / "other.pem"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()))
    result = hoopgw("audit", "verify", "-c", config, "--public-key", other)
    assert result.returncode == 1 and "FAILED at seq 10 (checkpoint_invalid)" in result.stdout


def test_cli_verify_without_a_store(tmp_path: Path) -> None:
    result = hoopgw("audit", "verify", "-c", _config(tmp_path / "var"))
    assert result.returncode == 1 and "hoopgw: error: no audit store at" in result.stderr


def test_cli_verify_a_real_gateway(gateway_factory: GatewayFactory) -> None:
    gw: Gateway = gateway_factory()
    res = gw.psql(
        "CREATE TEMP TABLE t (id int);\nINSERT INTO t VALUES (1), (2);\n"
        "/* hoop:prompt=audit-chain-1 */ UPDATE t SET id = id + 1;\nSELECT count(*) FROM t;\n"
    )
    assert res.returncode == 0, res.stderr
    while_running = gw.run_cli("audit", "verify", "--json")
    assert while_running.returncode == 0, while_running.stdout + while_running.stderr
    assert gw.stop() == 0
    result = gw.run_cli("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: ") and "checkpoints: " in result.stdout
    assert "not signed yet" not in result.stdout  # the gateway sealed the chain as it stopped
    conn = sqlite3.connect(gw.data_dir / DB_FILE, isolation_level=None)
    try:
        (seq,) = conn.execute(
            "SELECT seq FROM events WHERE kind = 'statement' AND data LIKE '%UPDATE t SET%'"
        ).fetchone()
        kinds = {k for (k,) in conn.execute("SELECT kind FROM events")}
        assert {"session_open", "statement", "session_close"} <= kinds
        conn.execute("UPDATE events SET data = replace(data, 'id + 1', 'id + 2') WHERE seq = ?", (seq,))
    finally:
        conn.close()
    result = gw.run_cli("audit", "verify")
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAILED at seq {seq} (changed)")


def test_a_tail_left_unsealed_is_sealed_after_a_restart(tmp_path: Path) -> None:
    write_store(tmp_path, statements=3)
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    conn.execute("DELETE FROM checkpoints")  # as if the gateway died before sealing
    conn.close()
    assert verify(tmp_path).unsigned == 5
    writer = AuditWriter(tmp_path, checkpoint_interval=0.05)  # no new event: the timer alone seals
    try:
        deadline = time.monotonic() + 5
        while writer.checkpoints_total == 0:
            assert time.monotonic() < deadline, "the unsealed tail was not sealed"
            time.sleep(0.01)
    finally:
        writer.close()
    report = verify(tmp_path)
    assert report.ok and report.unsigned == 0 and report.checkpoints == 1
