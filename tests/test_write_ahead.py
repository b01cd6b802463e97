"""Write-ahead audit through the REAL gateway: a statement that can change data is durably in the audit
store before the target sees it; reads never wait for the store; a store that cannot record a write
stops the write, not the gateway; kill -9 during pgbench TPC-B loses no audited write."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ._support.gateway import Gateway, PgConn
from ._support.pg import TestPg
from ._support.procs import require_binary, run, wait_until

TABLE = "wal_accounts"


@pytest.fixture
def wal_table(pg: TestPg) -> str:
    pg.psql(
        f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id int PRIMARY KEY, balance int);"
        f"INSERT INTO {TABLE} VALUES (1, 100), (2, 200); GRANT ALL ON {TABLE} TO app"
    )
    return TABLE


def _events(data_dir: Path, kind: str) -> list[dict[str, Any]]:
    with sqlite3.connect(data_dir / "audit.db") as conn:
        rows = conn.execute(
            "SELECT seq, session_id, data FROM events WHERE kind = ? ORDER BY seq", (kind,)
        ).fetchall()
    return [{"seq": r[0], "session_id": r[1], **orjson.loads(r[2])} for r in rows]


def _balance(pg: TestPg, row: int) -> str:
    return pg.psql(f"SELECT balance FROM {TABLE} WHERE id = {row}")


def test_a_write_waits_for_the_store_and_a_read_does_not(
    gateway: Gateway, pg: TestPg, wal_table: str
) -> None:
    with psycopg.connect(gateway.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT 1").fetchone()  # the session is open and recorded
        gateway_store = sqlite3.connect(gateway.data_dir / "audit.db", timeout=30)
        gateway_store.execute("BEGIN EXCLUSIVE")  # the store cannot commit until this lets go
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                with psycopg.connect(gateway.conninfo(), autocommit=True) as w:
                    w.execute(f"UPDATE {TABLE} SET balance = balance + 1 WHERE id = 1")
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                done.set()

        # a session opened while the store is locked: its session_open waits, its reads do not
        thread = threading.Thread(target=write, daemon=True)
        try:
            t0 = time.monotonic()
            assert conn.execute(f"SELECT balance FROM {TABLE} WHERE id = 2").fetchone() == (200,)
            thread.start()
            time.sleep(1.5)
            # the UPDATE has been sent, but it is not durable in the store: the target never saw it
            assert not done.is_set()
            assert _balance(pg, 1) == "100"
            activity = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'UPDATE wal_%'"
            assert conn.execute(activity).fetchone() == (0,)
            assert time.monotonic() - t0 < 8  # the read above did not wait for the lock (busy timeout 10 s)
        finally:
            gateway_store.rollback()
            gateway_store.close()
        assert done.wait(30)
        thread.join(5)
    assert not errors, errors
    assert _balance(pg, 1) == "101"
    gateway.stop()  # the completed statements are committed within the flush interval; stop: now
    intents = [e for e in _events(gateway.data_dir, "statement_intent") if e["sql"].startswith("UPDATE")]
    statements = [e for e in _events(gateway.data_dir, "statement") if e["sql"].startswith("UPDATE")]
    assert len(intents) == 1 and len(statements) == 1
    assert intents[0]["seq"] < statements[0]["seq"]
    assert intents[0]["session_id"] == statements[0]["session_id"]
    assert intents[0]["kind"] == "query" and intents[0]["params"] is None
    # reads and session statements are not written ahead
    assert not [e for e in _events(gateway.data_dir, "statement_intent") if e["sql"].startswith("SELECT")]


def test_inside_a_transaction_a_write_runs_at_once_and_its_commit_waits_for_the_store(
    gateway: Gateway, pg: TestPg, wal_table: str
) -> None:
    with psycopg.connect(gateway.conninfo()) as conn:  # not autocommit: psycopg opens a block
        conn.execute("SELECT 1").fetchone()
        conn.commit()
        store = sqlite3.connect(gateway.data_dir / "audit.db", timeout=30)
        store.execute("BEGIN EXCLUSIVE")
        committed = threading.Event()
        try:
            # a plain write inside the block runs while its intent waits for the store ...
            conn.execute(f"UPDATE {TABLE} SET balance = 500 WHERE id = 2")
            assert conn.execute(f"SELECT balance FROM {TABLE} WHERE id = 2").fetchone() == (500,)

            def commit() -> None:
                conn.commit()
                committed.set()

            thread = threading.Thread(target=commit, daemon=True)
            thread.start()
            time.sleep(1.0)
            # ... but the COMMIT is not forwarded before the UPDATE is on record
            assert not committed.is_set()
            assert _balance(pg, 2) == "200"
        finally:
            store.rollback()
            store.close()
        assert committed.wait(30)
        thread.join(5)
    assert _balance(pg, 2) == "500"
    gateway.stop()
    intents = [e for e in _events(gateway.data_dir, "statement_intent") if e["sql"].startswith("UPDATE")]
    assert len(intents) == 1


def test_a_write_pipelined_with_its_commit_waits_for_the_store(
    gateway: Gateway, pg: TestPg, wal_table: str
) -> None:
    """UPDATE and COMMIT in one client read, inside a block (libpq pipeline mode, one flush): the
    COMMIT must not go before the UPDATE's intent is durable (a barrier waits for this read's own
    intents too)."""
    from psycopg import pq

    raw = pq.PGconn.connect(gateway.conninfo().encode())
    try:
        assert raw.status == pq.ConnStatus.OK, raw.error_message
        assert raw.exec_(b"BEGIN").status == pq.ExecStatus.COMMAND_OK
        store = sqlite3.connect(gateway.data_dir / "audit.db", timeout=30)
        store.execute("BEGIN EXCLUSIVE")
        try:
            raw.enter_pipeline_mode()
            raw.send_query_params(f"UPDATE {TABLE} SET balance = 900 WHERE id = 1".encode(), None)
            raw.send_query_params(b"COMMIT", None)
            raw.pipeline_sync()
            assert raw.flush() == 0  # both in one write
            time.sleep(1.0)
            assert _balance(pg, 1) == "100", "committed before its intent was on record"
        finally:
            store.rollback()
            store.close()
        statuses: list[int] = []
        deadline = time.monotonic() + 30
        while len(statuses) < 3 and time.monotonic() < deadline:
            raw.consume_input()
            while not raw.is_busy():
                res = raw.get_result()
                if res is None:
                    break
                statuses.append(res.status)
            time.sleep(0.01)
        assert statuses == [pq.ExecStatus.COMMAND_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.PIPELINE_SYNC]
    finally:
        raw.finish()
    assert _balance(pg, 1) == "900"


def test_extended_protocol_writes_carry_their_masked_params(
    gateway_factory: Any, pg: TestPg, wal_table: str
) -> None:
    gw = gateway_factory(extra={"masking": [{"connections": ["*"], "detectors": ["credit_card"]}]})
    card = "4111111111111111"
    pg.psql(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS note text")
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        with conn.pipeline():
            for i in range(3, 8):
                conn.execute(
                    f"INSERT INTO {TABLE} (id, balance, note) VALUES (%t, %t, %t)", (i, i * 10, card)
                )
        conn.execute("BEGIN")
        conn.execute(f"DELETE FROM {TABLE} WHERE id = %t", (3,))
        conn.execute("COMMIT")
    assert pg.psql(f"SELECT count(*) FROM {TABLE} WHERE id BETWEEN 3 AND 7") == "4"
    gw.stop()
    intents = _events(gw.data_dir, "statement_intent")
    inserts = [e for e in intents if e["sql"].startswith("INSERT")]
    assert [e["params"][0] for e in inserts] == ["3", "4", "5", "6", "7"]
    assert all(e["kind"] == "execute" for e in inserts)
    raw = (gw.data_dir / "audit.db").read_bytes()
    assert card.encode() not in raw, "intents are masked before they are recorded"
    assert all(e["params"][2] != card for e in inserts)
    assert [e["params"] for e in intents if e["sql"].startswith("DELETE")] == [["3"]]
    assert not [e for e in intents if e["sql"] in ("BEGIN", "COMMIT")]


def test_write_ahead_off_records_no_intents(gateway_factory: Any, pg: TestPg, wal_table: str) -> None:
    gw = gateway_factory(extra={"audit": {"write_ahead": False}})
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        conn.execute(f"UPDATE {TABLE} SET balance = 7 WHERE id = 2")
    assert _balance(pg, 2) == "7"
    gw.stop()
    assert _events(gw.data_dir, "statement_intent") == []
    assert [e for e in _events(gw.data_dir, "statement") if e["sql"].startswith("UPDATE")]


def test_a_store_that_cannot_record_a_write_stops_the_write_not_the_gateway(
    gateway: Gateway, pg: TestPg, wal_table: str
) -> None:
    with sqlite3.connect(gateway.data_dir / "audit.db", timeout=30) as store:
        store.execute(
            "CREATE TRIGGER refuse_intents BEFORE INSERT ON events WHEN NEW.kind = 'statement_intent' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    with psycopg.connect(gateway.conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute(f"UPDATE {TABLE} SET balance = 0 WHERE id = 1")
        assert info.value.sqlstate == "58030", info.value
        assert "audit store cannot record this statement" in str(info.value)
    assert _balance(pg, 1) == "100", "the write never reached the target"
    # the gateway keeps serving: reads work, and writes once the store accepts them again
    with psycopg.connect(gateway.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    with sqlite3.connect(gateway.data_dir / "audit.db", timeout=30) as store:
        store.execute("DROP TRIGGER refuse_intents")
    with psycopg.connect(gateway.conninfo(), autocommit=True) as conn:
        conn.execute(f"UPDATE {TABLE} SET balance = 1 WHERE id = 1")
    assert _balance(pg, 1) == "1"
    assert gateway.running
    assert "write-ahead audit failed" in gateway.log_text()


# ------------------------------------------------------------------------- kill -9 during TPC-B
BENCH_DB = "hoopgw_wal_bench"
_HISTORY = re.compile(
    r"INSERT INTO pgbench_history \(tid, bid, aid, delta, mtime\) "
    r"VALUES \((-?\d+), (-?\d+), (-?\d+), (-?\d+),"
)


@pytest.mark.parametrize("mode", ["simple", "extended"])
def test_kill_9_during_pgbench_tpcb_loses_no_audited_write(
    gateway_factory: Any, pg: TestPg, mode: str
) -> None:
    pg.cluster.psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    pg.cluster.create_database(BENCH_DB, owner="app")
    gw: Gateway = gateway_factory([PgConn("benchdb", database=BENCH_DB)])
    pgbench = require_binary("pgbench")
    init = run([pgbench, "-i", "-s", "1", "-q", gw.conninfo("benchdb", dbname=BENCH_DB)], timeout=120)
    assert init.returncode == 0, init.stderr
    bench = subprocess.Popen(  # a real client
        [pgbench, "-T", "30", "-c", "4", "-j", "2", "-M", mode, "-n",
         gw.conninfo("benchdb", dbname=BENCH_DB)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(
            lambda: int(pg.psql("SELECT count(*) FROM pgbench_history", db=BENCH_DB)) >= 200,
            timeout=30,
            what="pgbench writing through the gateway",
        )
        pid = gw.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
    wait_until(lambda: not gw.running, timeout=10, what="the gateway gone")
    # every transaction the target committed inserted one history row: its INSERT must be on record
    rows = pg.psql("SELECT tid, bid, aid, delta FROM pgbench_history", db=BENCH_DB).split("\n")
    written = {tuple(int(v) for v in line.split("|")) for line in rows if line}
    assert len(written) >= 200
    audited: set[tuple[int, ...]] = set()
    for e in _events(gw.data_dir, "statement_intent"):
        if mode == "simple":
            m = _HISTORY.search(e["sql"])
            if m:
                audited.add(tuple(int(v) for v in m.groups()))
        elif e["sql"].startswith("INSERT INTO pgbench_history"):
            audited.add(tuple(int(v) for v in e["params"][:4]))
    missing = written - audited
    assert not missing, f"{len(missing)} of {len(written)} committed writes have no intent on record"
    # and the store the kill left behind still verifies (its unsealed tail is chained)
    res = run(gw.cli("audit", "verify", "--json"), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_store_file_removed_under_the_gateway_stops_writes(
    gateway: Gateway, pg: TestPg, wal_table: str
) -> None:
    with psycopg.connect(gateway.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT 1").fetchone()
        for suffix in ("", "-wal", "-shm"):
            (gateway.data_dir / f"audit.db{suffix}").unlink(missing_ok=True)
        with pytest.raises(psycopg.OperationalError) as info:
            conn.execute(f"UPDATE {TABLE} SET balance = 0 WHERE id = 1")
        assert info.value.sqlstate == "58030", info.value
    assert _balance(pg, 1) == "100", "the write never reached the target"
    assert "was removed while the gateway runs" in gateway.log_text()
    assert gateway.running
