"""The PostgreSQL audit store (``[audit] store = "env:..."``, docs/AUDIT.md "Stores"): the same schema,
chain, checkpoints, tamper evidence, write-ahead, retention and evidence as the SQLite file, in a fresh
database of the test cluster owned by a role with a password; and several gateway nodes on one chain."""

from __future__ import annotations

import concurrent.futures
import functools
import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from hoopgw.approvals import ApprovalStore, load_signing_key
from hoopgw.audit import SCHEMA_VERSION, AuditStore, AuditWriter, Report, open_readonly, verify_chain
from hoopgw.audit._db import WRITE_LOCK, Db, Store, has_password, pg_sql, redact
from hoopgw.audit._retention import hold, purge
from hoopgw.demo import toml_dumps
from hoopgw.errors import StoreError
from hoopgw.identity import ApiKeyStore

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import hoopgw
from .conftest import GatewayFactory
from .test_audit import FakeStatement, info
from .test_audit_chain import EVERY, STATEMENTS, TOTAL, _resign, rehash_from, renumber_after, row_hash
from .test_audit_retention import LATER

URL_ENV = "HOOPGW_TEST_STORE_URL"


@dataclass(frozen=True)
class PgStore:
    """A database of the test cluster for the audit store, owned by ``role`` (with ``password``)."""

    pg: TestPg
    role: str
    password: str
    database: str

    @property
    def url(self) -> str:
        c = self.pg.cluster
        return f"postgresql://{self.role}:{self.password}@{c.host}:{c.port}/{self.database}"

    def store(self, data_dir: Path) -> Store:
        return Store(data_dir, self.url)

    def psql(self, sql: str) -> str:
        return self.pg.psql(sql, db=self.database)

    def wipe(self) -> None:
        self.psql(f"DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION {self.role};")


@pytest.fixture(scope="module")
def pgstore(pg: TestPg) -> Iterator[PgStore]:
    """A fresh database (and role) for this module's stores."""
    from hoopgw._pgcluster import Role

    suffix = secrets.token_hex(4)
    role, database = f"hoopstore_{suffix}", f"hoopgw_store_{suffix}"
    password = secrets.token_urlsafe(18)
    pg.cluster.add_role(Role(role, password=password))
    pg.cluster.create_database(database, owner=role)
    yield PgStore(pg, role, password, database)
    pg.cluster.kill_backends(db=database)
    pg.cluster.psql(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def empty(pgstore: PgStore) -> PgStore:
    """The module's database, emptied (no hoopgw tables)."""
    pgstore.pg.cluster.kill_backends(db=pgstore.database)
    pgstore.wipe()
    return pgstore


def write_store(store: Store, statements: int = STATEMENTS) -> None:
    """One session of ``statements`` statements through the real writer (checkpoints every 10)."""
    writer = AuditWriter(store, flush_interval=0.01, checkpoint_every=EVERY)
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    for i in range(statements):
        writer.statement(sid, FakeStatement(f"select {i}"), prompt_id="p1" if i % 5 == 0 else None)
    writer.session_close(sid, "client_terminated")
    writer.close()


def verify(store: Store, **kw: Any) -> Report:
    conn = open_readonly(store)
    try:
        return verify_chain(conn, load_signing_key(store.data_dir, create=False).public_key(), **kw)
    finally:
        conn.close()


# --- the layer ---------------------------------------------------------------------------------------------


def test_sql_translation_and_redaction() -> None:
    assert pg_sql("SELECT a FROM t WHERE b = ? AND c = :name AND d LIKE 'x%?' AND e::json #>> '{a}' = ?") == (
        "SELECT a FROM t WHERE b = %s AND c = %(name)s AND d LIKE 'x%%?' AND e::json #>> '{a}' = %s"
    )
    url = "postgresql://hoop:s3cr%2Ft@db.internal:5432/audit?sslmode=require&password=other"
    assert redact(url) == "postgresql://hoop:***@db.internal:5432/audit?sslmode=require&password=***"
    store = Store(Path("/tmp/x"), url)
    assert "s3cr" not in repr(store) and "s3cr" not in str(store)
    assert store.scrub("failed for s3cr/t and s3cr%2Ft and other") == "failed for *** and *** and ***"
    assert has_password(url) and not has_password("postgresql://hoop@db/audit")


def test_schema_is_created_once_by_nodes_starting_together(empty: PgStore, tmp_path: Path) -> None:
    store = empty.store(tmp_path)
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            store.connect(create=True).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert empty.psql("SELECT version FROM hoopgw_schema") == str(SCHEMA_VERSION)
    tables = set(empty.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert {
        "events",
        "sessions",
        "checkpoints",
        "purges",
        "legal_holds",
        "approval_requests",
        "prompts",
    } <= tables
    with pytest.raises(StoreError, match="no audit store"):
        Store(tmp_path, empty.url.replace(empty.database, "postgres")).open_readonly()


def test_chain_round_trips_exactly(empty: PgStore, tmp_path: Path) -> None:
    store = empty.store(tmp_path)
    write_store(store)
    report = verify(store)
    assert report.ok, report.problem
    assert (report.events, report.first_seq, report.last_seq) == (TOTAL, 1, TOTAL)
    assert report.checkpoints == TOTAL // EVERY + 1 and report.unsigned == 0
    with AuditStore.open(store, create=False) as reader:
        (session,) = reader.list_sessions()
        assert session["statements"] == STATEMENTS and session["status"] == "closed"
        events = reader.session_events(session["id"])
        assert [e["kind"] for e in events[:2]] == ["session_open", "statement"]
        assert len(reader.prompt_events("p1")) == STATEMENTS // 5


def test_store_errors_never_show_the_password(pgstore: PgStore, tmp_path: Path) -> None:
    wrong = Store(tmp_path, pgstore.url.replace(pgstore.password, "not-the-password-123"))
    with pytest.raises(StoreError) as caught:
        wrong.connect(create=True)
    assert "password authentication failed" in str(caught.value)
    assert "not-the-password-123" not in str(caught.value) and "***" in str(caught.value)
    port = pgstore.pg.cluster.port
    gone = Store(tmp_path, pgstore.url.replace(f":{port}/", ":1/"))
    with pytest.raises(StoreError, match="cannot connect to the audit store") as caught:
        gone.connect(create=True)
    assert pgstore.password not in str(caught.value)


# --- tampering, each caught as on SQLite -------------------------------------------------------------------


def _edit_checkpoint_record(db: Db) -> None:
    (raw,) = db.execute("SELECT record FROM checkpoints WHERE seq = 30").fetchone()
    record = json.loads(raw)
    record["hash"] = "sha256:" + "00" * 32
    db.execute(
        "UPDATE checkpoints SET hash = ?, record = ? WHERE seq = 30",
        (bytes(32), orjson.dumps(record).decode()),
    )


def _insert_forged(db: Db) -> None:
    from hoopgw.audit._chain import event_hash

    renumber_after(db, 20, 1)  # type: ignore[arg-type]  # the SQLite tamper helpers, duck-typed over a PostgreSQL Db
    prev = row_hash(db, 20)  # type: ignore[arg-type]  # the SQLite tamper helpers, duck-typed over a PostgreSQL Db
    data = b'{"sql":"select forged"}'
    db.execute(
        "INSERT INTO events (seq, ts, session_id, kind, data, prev_hash, hash) VALUES (21, 1.5, NULL,"
        " 'statement', ?, ?, ?)",
        (data.decode(), prev, event_hash(21, 1.5, None, b"statement", data, None, prev)),
    )


def _rewrite(db: Db) -> None:
    db.execute("UPDATE events SET data = '{}' WHERE seq = 25")
    rehash_from(db, 25)  # type: ignore[arg-type]  # the SQLite tamper helpers, duck-typed over a PostgreSQL Db


def _delete_and_renumber(db: Db) -> None:
    db.execute("DELETE FROM events WHERE seq = 30")
    renumber_after(db, 30, -1)  # type: ignore[arg-type]  # the SQLite tamper helpers, duck-typed over a PostgreSQL Db


def _swap(db: Db) -> None:
    for sql in ("seq = -1 WHERE seq = 12", "seq = 12 WHERE seq = 13", "seq = 13 WHERE seq = -1"):
        db.execute(f"UPDATE events SET {sql}")


def _count(db: Db) -> None:
    _resign(db, 30, load_signing_key(Path(db.store.data_dir)), events=29)  # type: ignore[arg-type]  # the SQLite tamper helpers, duck-typed over a PostgreSQL Db


TAMPERING: dict[str, tuple[Callable[[Db], None], tuple[int, str]]] = {
    "edit data": (
        lambda db: db.execute(
            "UPDATE events SET data = replace(data, 'select 15', 'select 99') WHERE seq = 17"
        ),
        (17, "changed"),
    ),
    "edit ts": (lambda db: db.execute("UPDATE events SET ts = ts + 3600 WHERE seq = 23"), (23, "changed")),
    "drop a prompt id": (
        lambda db: db.execute("UPDATE events SET prompt_id = NULL WHERE seq = 12 AND prompt_id = 'p1'"),
        (12, "changed"),
    ),
    "rewrite and recompute": (_rewrite, (21, "rewritten")),
    "delete a row": (lambda db: db.execute("DELETE FROM events WHERE seq = 30"), (30, "missing")),
    "delete and renumber": (_delete_and_renumber, (30, "unlinked")),
    "delete the first rows": (lambda db: db.execute("DELETE FROM events WHERE seq <= 3"), (1, "missing")),
    "delete the tail": (lambda db: db.execute("DELETE FROM events WHERE seq > 45"), (46, "truncated")),
    "insert a row": (_insert_forged, (21, "inserted")),
    "reorder": (_swap, (12, "reordered")),
    "edit a checkpoint hash": (
        lambda db: db.execute("UPDATE checkpoints SET hash = ? WHERE seq = 30", (bytes(32),)),
        (30, "checkpoint_changed"),
    ),
    "edit a checkpoint record": (_edit_checkpoint_record, (30, "checkpoint_invalid")),
    "re-sign a wrong count": (_count, (30, "checkpoint_count")),
    "delete a checkpoint": (
        lambda db: db.execute("DELETE FROM checkpoints WHERE seq = 20"),
        (20, "checkpoint_missing"),
    ),
}


@pytest.fixture
def written(empty: PgStore, tmp_path: Path) -> Store:
    store = empty.store(tmp_path)
    write_store(store)
    return store


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_reported_as_on_sqlite(written: Store, name: str) -> None:
    tamper, expected = TAMPERING[name]
    db = written.connect(create=False)
    try:
        tamper(db)
    finally:
        db.close()
    report = verify(written)
    assert report.problem is not None, "tampering not detected"
    assert (report.problem.seq, report.problem.code) == expected, report.problem


def test_cli_verify_reads_the_configured_store(written: Store, pgstore: PgStore, tmp_path: Path) -> None:
    config = tmp_path / "hoopgw.toml"
    config.write_text(
        toml_dumps(
            {
                "gateway": {"data_dir": str(written.data_dir)},
                "connections": [
                    {
                        "name": "db",
                        "type": "postgres",
                        "upstream": "postgresql://app@127.0.0.1:5/x",
                        "listen": "127.0.0.1:1",
                    }
                ],
                "audit": {"store": f"env:{URL_ENV}"},
            }
        )
    )
    env = {URL_ENV: pgstore.url}
    ok = hoopgw("audit", "verify", "-c", config, "--json", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    out = json.loads(ok.stdout)
    assert out["ok"] and out["events"] == TOTAL and pgstore.password not in ok.stdout
    assert out["store"].startswith(f"postgresql://{pgstore.role}:***@")
    listed = hoopgw("sessions", "list", "-c", config, "--json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1
    pgstore.psql("UPDATE events SET ts = ts + 1 WHERE seq = 33")
    bad = hoopgw("audit", "verify", "-c", config, env=env)
    assert bad.returncode == 1 and bad.stdout.startswith("FAILED at seq 33 (changed)")
    unset = hoopgw("audit", "verify", "-c", config)
    assert unset.returncode == 1 and f"env:{URL_ENV}" in unset.stderr


# --- retention ---------------------------------------------------------------------------------------------


def test_purge_and_legal_hold(empty: PgStore, tmp_path: Path) -> None:
    from .test_audit_retention import write_store as write_sessions

    store = empty.store(tmp_path)
    ids = write_sessions(store)  # type: ignore[arg-type]  # annotated for a data_dir; AuditWriter takes a Store as well
    held = hold(store, ids[1], reason="litigation", by="legal")
    assert held["set_by"] == "legal"
    key = load_signing_key(tmp_path)
    dry = purge(store, {"*": 1}, LATER, key, dry_run=True)
    result = purge(store, {"*": 1}, LATER, key, record_events=True)
    assert result.deleted == dry.deleted > 0 and result.tombstoned > 0 and result.records
    report = verify(store)
    assert report.ok, report.problem
    assert report.purged_to == result.cut and report.tombstones == result.tombstoned
    (seq,) = json.loads("[" + empty.psql("SELECT min(seq) FROM events WHERE data LIKE '{\"purged\":%'") + "]")
    empty.psql(f"UPDATE events SET data = '{{\"purged\":99}}' WHERE seq = {seq}")
    report = verify(store)
    assert report.problem is not None and report.problem.code == "tombstone_changed"


# --- through the gateway ---------------------------------------------------------------------------------

AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "deny": ["ddl"],
    "approvers": ["group:dba"],
    "approval_timeout": "60s",
}
DBA = {"name": "dba", "subjects": ["group:dba", "group:dev"], "connections": ["*"], "allow": ["*"]}


def _node(factory: GatewayFactory, pgstore: PgStore, *, start: bool = True, **kw: Any) -> Gateway:
    return factory(
        extra={"audit": {"store": f"env:{URL_ENV}", "checkpoint_every": 50}, "policy": [AGENTS, DBA]},
        env={URL_ENV: pgstore.url},
        start=start,
        **kw,
    )


def _share_keys(first: Gateway, second: Gateway) -> None:
    """Nodes of one store share the gateway's keys (docs/AUDIT.md "Stores"): copy them over."""
    second.data_dir.mkdir(parents=True, exist_ok=True)
    for path in first.data_dir.iterdir():
        if path.is_file() and not path.name.startswith("audit.db"):
            shutil.copy2(path, second.data_dir / path.name)


def _in_thread(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


def _pending(store: Store, requester: str, timeout: float = 15.0) -> dict[str, Any]:
    approvals = ApprovalStore(store)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in approvals.list(status="pending") if r.requester == requester]
            if found:
                return found[0].record
            assert time.monotonic() < deadline, "no pending request"
            time.sleep(0.05)
    finally:
        approvals.close()


def test_gateway_on_postgres(empty: PgStore, gateway_factory: GatewayFactory, pg: TestPg) -> None:
    gw = _node(gateway_factory, empty)
    assert not (gw.data_dir / "audit.db").exists()
    table = f"acct_{secrets.token_hex(4)}"
    pg.psql(
        f"CREATE TABLE {table} (id int PRIMARY KEY, balance int); INSERT INTO {table} VALUES (1, 100);",
        user="app",
    )
    tagged = f"/* hoop:prompt=pg-store-1 */ UPDATE {table} SET balance = 5 WHERE id = 1;"
    res = gw.psql(f"SELECT balance FROM {table};\n{tagged}")
    assert res.returncode == 0, res.stderr
    denied = gw.psql(f"DROP TABLE {table};", groups=("ai-agents",))
    assert denied.returncode != 0
    store = empty.store(gw.data_dir)
    with psycopg.connect(gw.conninfo(user="bot", groups=("ai-agents",)), autocommit=True) as conn:
        held = _in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 7 WHERE id = 1").rowcount)
        record = _pending(store, "bot")
        decided = gw.run_cli("approvals", "approve", record["id"], "--token", gw.token("dora", ("dba",)))
        assert decided.returncode == 0, decided.stdout + decided.stderr
        assert held.result(timeout=15) == 1
    keys = ApiKeyStore(store)
    try:
        assert keys.list_keys() == []
    finally:
        keys.close()
    assert gw.stop() == 0
    result = gw.run_cli("audit", "verify")
    assert result.returncode == 0 and result.stdout.startswith("OK: "), result.stdout + result.stderr
    assert "not signed yet" not in result.stdout
    # the signed approval records, read offline from the PostgreSQL store (the gateway is stopped)
    records = gw.run_cli("approvals", "verify", record["id"])
    assert records.returncode == 0, records.stdout + records.stderr
    assert "postgresql://" in records.stdout + records.stderr and empty.password not in records.stdout
    kinds = set(empty.psql("SELECT DISTINCT kind FROM events").split())
    assert {"session_open", "statement", "statement_intent", "policy_denied", "approval_requested"} <= kinds
    assert (
        empty.psql("SELECT count(*) FROM events WHERE prompt_id = 'pg-store-1' AND kind = 'statement'") == "1"
    )
    # evidence from the PostgreSQL store, verified offline
    out = gw.workdir / "pack"
    export = gw.run_cli("evidence", "export", "--out", str(out), "--json")
    assert export.returncode == 0, export.stdout + export.stderr
    checked = gw.run_cli("evidence", "verify", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    events = (out / "events.jsonl").read_text().splitlines()
    assert len(events) == int(empty.psql("SELECT count(*) FROM events"))
    sessions = gw.run_cli("sessions", "list", "--json")
    assert sessions.returncode == 0 and len(json.loads(sessions.stdout)) >= 3
    sid = json.loads(sessions.stdout)[0]["id"]
    held_out = gw.run_cli("sessions", "hold", sid, "--reason", "audit")
    assert held_out.returncode == 0, held_out.stderr
    shown = gw.run_cli("replay", sid, "--speed", "0")
    assert shown.returncode == 0, shown.stderr
    assert gw.run_cli("audit", "verify").returncode == 0


def test_write_ahead_waits_for_the_store_lock(
    empty: PgStore, gateway_factory: GatewayFactory, pg: TestPg
) -> None:
    gw = _node(gateway_factory, empty)
    table = f"wal_{secrets.token_hex(4)}"
    pg.psql(f"CREATE TABLE {table} (id int)", user="app")
    with (
        psycopg.connect(gw.conninfo(user="alice", groups=("dev",)), autocommit=True) as client,
        psycopg.connect(empty.url, autocommit=True) as locker,
    ):
        client.execute(f"SELECT count(*) FROM {table}").fetchone()
        locker.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        try:
            write = _in_thread(lambda: client.execute(f"INSERT INTO {table} VALUES (1)"))
            time.sleep(1.5)
            assert not write.done(), "the write went upstream before its intent was committed"
            assert pg.psql(f"SELECT count(*) FROM {table}", user="app") == "0"
        finally:
            locker.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
        write.result(timeout=15)
    assert pg.psql(f"SELECT count(*) FROM {table}", user="app") == "1"
    intents = empty.psql(
        f"SELECT count(*) FROM events WHERE kind = 'statement_intent' AND data LIKE '%INSERT INTO {table}%'"
    )
    assert intents == "1"


def test_two_nodes_write_one_chain(empty: PgStore, gateway_factory: GatewayFactory, pg: TestPg) -> None:
    first = _node(gateway_factory, empty)
    second = _node(gateway_factory, empty, start=False)
    _share_keys(first, second)
    second.start()
    table = f"nodes_{secrets.token_hex(4)}"
    pg.psql(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)", user="app")

    def work(gw: Gateway, base: int) -> None:
        with psycopg.connect(gw.conninfo(user=f"u{base}", groups=("dev",)), autocommit=True) as conn:
            for i in range(40):
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (base + i, i))
                conn.execute(f"SELECT n FROM {table} WHERE id = %s", (base + i,))

    nodes = (first, second, first, second)
    jobs = [
        _in_thread(functools.partial(work, gw, base))
        for gw, base in zip(nodes, range(0, 4000, 1000), strict=True)
    ]
    for job in jobs:
        job.result(timeout=60)
    # an approval held on one node, decided through the other: the waiter wakes (polled within ~1 s)
    store = empty.store(first.data_dir)
    with psycopg.connect(first.conninfo(user="bot", groups=("ai-agents",)), autocommit=True) as conn:
        held = _in_thread(lambda: conn.execute(f"UPDATE {table} SET n = -1 WHERE id = 0").rowcount)
        record = _pending(store, "bot")
        decided = second.run_cli(
            "approvals", "approve", record["id"], "--token", second.token("dora", ("dba",))
        )
        assert decided.returncode == 0, decided.stdout + decided.stderr
        assert held.result(timeout=15) == 1
    assert first.stop() == 0 and second.stop() == 0
    report = verify(store)
    assert report.ok, report.problem
    assert report.checkpoints >= 2 and report.unsigned == 0
    statements = int(empty.psql("SELECT count(*) FROM events WHERE kind = 'statement'"))
    assert statements >= 320
    assert pg.psql(f"SELECT count(*) FROM {table}", user="app") == "160"


def test_a_store_that_cannot_be_reached_stops_the_gateway(
    pgstore: PgStore, gateway_factory: GatewayFactory
) -> None:
    wrong = pgstore.url.replace(pgstore.password, "Wrong-Password-42")
    gw = gateway_factory(extra={"audit": {"store": f"env:{URL_ENV}"}}, env={URL_ENV: wrong}, start=False)
    result = gw.run_cli("serve", timeout=30)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "cannot connect to the audit store" in out and "password authentication failed" in out
    assert "Wrong-Password-42" not in out and f"{pgstore.role}:***@" in out


def test_check_accepts_the_store_forms(tmp_path: Path, pgstore: PgStore) -> None:
    def check(store: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        config = tmp_path / "hoopgw.toml"
        config.write_text(
            toml_dumps(
                {
                    "gateway": {"data_dir": str(tmp_path / "var")},
                    "identity": {"issuer": "local"},
                    "connections": [
                        {
                            "name": "db",
                            "type": "postgres",
                            "upstream": "postgresql://app@127.0.0.1:5/x",
                            "listen": "127.0.0.1:15999",
                        }
                    ],
                    "policy": [DBA | {"connections": ["db"]}],
                    "audit": {"store": store},
                }
            )
        )
        result = hoopgw("check", "-c", config, env=env or {})
        return result.returncode, result.stdout + result.stderr

    assert check(f"env:{URL_ENV}", {URL_ENV: pgstore.url})[0] == 0
    assert check("postgresql://hoop@db.internal/audit")[0] == 0
    (pgstore_file := tmp_path / "store.url").write_text(pgstore.url + "\n")
    assert check(f"file:{pgstore_file}")[0] == 0
    code, out = check(f"env:{URL_ENV}")
    assert code == 1 and f"audit.store: env:{URL_ENV}: environment variable {URL_ENV} is not set" in out
    code, out = check(pgstore.url)
    assert code == 1 and "audit.store" in out and "must be references" in out and pgstore.password not in out
    code, out = check("mysql://x")
    assert code == 1 and "audit.store" in out
