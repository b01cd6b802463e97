"""Held statements through the REAL gateway with real clients (psql, psycopg, asyncpg).

A write by an ``ai-agents`` caller is held: the client gets a NoticeResponse naming the request and
waits; an approver decides through the gateway's API (the CLI is covered in test_approvals_api.py);
the client then gets its normal result or 42501 naming the request. Every check of the outcome reads
the upstream table straight from Postgres as well.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import psycopg
import pytest
from psycopg import errors as pgerrors

from hoopgw.approvals import (
    ApprovalStore,
    load_digest_key,
    load_records,
    load_signing_key,
    record_digest,
    statement_digest,
    verify_record,
)

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import require_binary

Conn = psycopg.Connection[tuple[Any, ...]]

AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "deny": ["ddl", "write-without-where"],
    "approvers": ["group:dba"],
    "approval_timeout": "60s",
}
# two approvals from two groups; a short timeout for the expiry test
TREASURY = {
    "name": "treasury",
    "subjects": ["group:treasury"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "approvers": ["group:dba", "group:risk"],
    "approvals_required": 2,
    "one_of_each_group": True,
}
HURRIED = {
    "name": "hurried",
    "subjects": ["group:hurried"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "approvers": ["group:dba"],
    "approval_timeout": "2s",
}
SHAPES = {
    "name": "shapes",
    "subjects": ["group:batch"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "approvers": ["group:dba"],
    "covers": "shape",
    "covers_for": "10m",
}
DBA = {"name": "dba", "subjects": ["group:dba"], "connections": ["*"], "allow": ["*"]}
MASKING = {"connections": ["bankdb"], "detectors": ["credit_card"], "style": "last4"}
CARD = "4111111111111111"


@pytest.fixture(scope="module")
def gw(module_gateway_factory: Any) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        extra={"policy": [AGENTS, TREASURY, HURRIED, SHAPES, DBA], "masking": [MASKING]},
        gateway={"log_level": "debug"},
    )
    return gateway


@pytest.fixture
def table(gw: Gateway, pg: TestPg) -> Iterator[str]:
    name = f"acct_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {name} (id int PRIMARY KEY, note text, balance int);"
        f"INSERT INTO {name} SELECT g, 'n' || g, 100 FROM generate_series(1, 5) g;",
        user="app",
    )
    yield name
    pg.psql(f"DROP TABLE {name}", user="app")


def state(pg: TestPg, table: str) -> str:
    return pg.psql(f"SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM {table}", user="app")


class Notices:
    """Collects (message, hint) of NoticeResponses (a Diagnostic is valid only inside the callback)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, diag: psycopg.errors.Diagnostic) -> None:
        self.items.append((diag.message_primary or "", diag.message_hint or ""))


def connect(gw: Gateway, user: str, groups: tuple[str, ...], notices: Notices | None = None) -> Conn:
    conn = psycopg.connect(gw.conninfo(user=user, groups=groups), autocommit=True)
    if notices is not None:
        conn.add_notice_handler(notices)
    return conn


def pending(gw: Gateway, requester: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The pending request records of ``requester`` (waits until there are ``count``), oldest first."""
    store = ApprovalStore(gw.data_dir)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in store.list(status="pending") if r.requester == requester]
            if len(found) >= count or time.monotonic() > deadline:
                return [r.record for r in reversed(found)]
            time.sleep(0.05)
    finally:
        store.close()


def closed_status(gw: Gateway, rid: str, timeout: float = 10.0) -> str:
    """The status of request ``rid`` once it is no longer pending (or "pending" after ``timeout``)."""
    store = ApprovalStore(gw.data_dir)
    try:
        deadline = time.monotonic() + timeout
        while True:
            got = store.get(rid)
            assert got is not None, rid
            if got.status != "pending" or time.monotonic() > deadline:
                return got.status
            time.sleep(0.05)
    finally:
        store.close()


def decide(
    gw: Gateway, rid: str, who: str, groups: tuple[str, ...], action: str, reason: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {} if reason is None else {"reason": reason}
    return httpx.post(
        f"{gw.api_url}/api/approvals/{rid}/{action}",
        json=body,
        headers={"Authorization": f"Bearer {gw.token(who, groups)}"},
        timeout=15,
        trust_env=False,
    )


def in_thread(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


def events(gw: Gateway, kind: str, **match: Any) -> list[dict[str, Any]]:
    """The recorded events of ``kind`` whose data has the ``match`` items (waits a while for one:
    the audit writer batches)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gw.data_dir / "audit.db") as db:
            rows = db.execute("SELECT data FROM events WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
        found = [e for e in (orjson.loads(r[0]) for r in rows) if match.items() <= e.items()]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- hold, notice, approve ---------------------------------------------------------------------------
def test_held_write_runs_once_approved(gw: Gateway, pg: TestPg, table: str) -> None:
    notices = Notices()
    with connect(gw, "bot1", ("ai-agents",), notices) as conn:
        sql = f"UPDATE {table} SET balance = 7, note = '{CARD}' WHERE id = 1 RETURNING balance"
        result = in_thread(lambda: conn.execute(sql).fetchall())
        (record,) = pending(gw, "bot1")
        time.sleep(0.3)
        assert not result.done(), "the statement must wait for the decision"
        assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"
        # the request: masked statement text, keyed digest of what is sent, rule, approvers
        assert record["statement"] == sql.replace(CARD, "************1111")
        assert CARD not in orjson.dumps(record).decode()
        assert record["statement_digest"] == statement_digest(load_digest_key(gw.data_dir), sql, [])
        assert (record["rule"], record["approvers"], record["approvals_required"]) == (
            "agents",
            ["group:dba"],
            1,
        )
        assert record["requester"]["subject"] == "bot1" and record["connection"] == "bankdb"
        assert record["expires_at"] - record["created_at"] == 60_000
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        assert result.result(timeout=15) == [(7,)]
        # the notice named the request and where to decide
        held = [hint for message, hint in notices.items if record["id"] in message]
        assert held, notices.items
        assert "hoopgw approvals approve " + record["id"] in held[0]
        assert gw.api_url in held[0]
        # the session goes on
        assert conn.execute(f"SELECT balance FROM {table} WHERE id = 1").fetchone() == (7,)
    assert state(pg, table) == "1:7,2:100,3:100,4:100,5:100"
    requested = events(gw, "approval_requested", request_id=record["id"])
    assert requested and CARD not in requested[0]["sql"] and requested[0]["rule"] == "agents"


def test_denied_write_gets_42501_naming_the_request(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot2", ("ai-agents",)) as conn:
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 0 WHERE id = 2"))
        (record,) = pending(gw, "bot2")
        no_reason = decide(gw, record["id"], "dora", ("dba",), "deny")
        assert no_reason.status_code == 400, no_reason.text
        # a reason is free text: it is masked like statements before it is signed and shown
        reason = f"not during close, card {CARD}"
        denied = decide(gw, record["id"], "dora", ("dba",), "deny", reason)
        assert denied.status_code == 200 and CARD not in denied.text
        assert denied.json()["decision"]["reason"] == "not during close, card ************1111"
        with pytest.raises(pgerrors.InsufficientPrivilege) as info:
            result.result(timeout=15)
        message = str(info.value.diag.message_primary)
        assert record["id"] in message and "denied" in message and "not during close" in message
        assert CARD not in message
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"


def test_expiry_refuses_and_the_session_stays_usable(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "hal", ("hurried",)) as conn:
        started = time.monotonic()
        with pytest.raises(pgerrors.InsufficientPrivilege) as info:
            conn.execute(f"UPDATE {table} SET balance = 0 WHERE id = 3")
        assert 1.5 < time.monotonic() - started < 10
        assert "expired" in str(info.value.diag.message_primary)
        assert conn.execute(f"SELECT balance FROM {table} WHERE id = 3").fetchone() == (100,)
    store = ApprovalStore(gw.data_dir)
    try:
        mine = [r for r in store.list() if r.requester == "hal"]
    finally:
        store.close()
    assert mine and mine[0].status == "expired"
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"


def test_requester_cannot_approve_their_own_request(gw: Gateway, pg: TestPg, table: str) -> None:
    # "ada" is an agent and also in the dba group: still not her own approver
    with connect(gw, "ada", ("ai-agents", "dba")) as conn:
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 1 WHERE id = 4"))
        (record,) = pending(gw, "ada")
        own = decide(gw, record["id"], "ada", ("dba",), "approve")
        assert own.status_code == 403 and "own request" in own.json()["error"]
        stranger = decide(gw, record["id"], "sam", ("ai-agents",), "approve")
        assert stranger.status_code in (403, 404)  # not an approver: it is not even shown
        time.sleep(0.3)
        assert not result.done()
        assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        result.result(timeout=15)
    assert state(pg, table) == "1:100,2:100,3:100,4:1,5:100"


def test_two_of_two_approvals(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "tess", ("treasury",)) as conn:
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 2 WHERE id = 5"))
        (record,) = pending(gw, "tess")
        assert decide(gw, record["id"], "dora", ("dba",), "approve").json()["status"] == "pending"
        again = decide(gw, record["id"], "dora", ("dba",), "approve")
        assert again.status_code in (403, 409), again.text  # an approver counts once
        # a second dba does not cover the risk group
        assert decide(gw, record["id"], "dave", ("dba",), "approve").json()["status"] == "pending"
        time.sleep(0.3)
        assert not result.done()
        assert decide(gw, record["id"], "rick", ("risk",), "approve").json()["status"] == "approved"
        result.result(timeout=15)
        late = decide(gw, record["id"], "rosa", ("risk",), "approve")
        assert late.status_code == 409 and "closed" in late.json()["error"]
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:2"


# -- extended protocol, pipelines, transactions --------------------------------------------------------
def test_extended_batch_with_parameters_is_held_whole(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot3", ("ai-agents",)) as conn:
        sql = f"UPDATE {table} SET balance = %s, note = %s WHERE id = %s RETURNING id"
        result = in_thread(lambda: conn.execute(sql, ("55", CARD, "1"), prepare=True).fetchall())
        (record,) = pending(gw, "bot3")
        assert record["params_masked"] == ["55", "************1111", "1"]
        pg_sql = sql.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1)
        assert record["statement"] == pg_sql
        assert record["statement_digest"] == statement_digest(
            load_digest_key(gw.data_dir), pg_sql, [b"55", CARD.encode(), b"1"]
        )
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        assert result.result(timeout=15) == [(1,)]
    assert state(pg, table) == "1:55,2:100,3:100,4:100,5:100"


def test_pipelined_statements_wait_behind_the_held_one_in_order(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot4", ("ai-agents",)) as conn:

        def pipeline() -> list[Any]:
            with conn.pipeline():
                c1 = conn.execute(f"SELECT balance FROM {table} WHERE id = 2")
                c2 = conn.execute(f"UPDATE {table} SET balance = balance + 1 WHERE id = 2 RETURNING balance")
                c3 = conn.execute(f"SELECT balance FROM {table} WHERE id = 2")
            return [c1.fetchone(), c2.fetchone(), c3.fetchone()]

        result = in_thread(pipeline)
        (record,) = pending(gw, "bot4")
        time.sleep(0.3)
        assert not result.done()
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        # the read after the write sees it: it waited behind the held statement
        assert result.result(timeout=15) == [(100,), (101,), (101,)]


def test_held_statement_inside_a_transaction_keeps_it_open(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot5", ("ai-agents",)) as conn:

        def work() -> tuple[Any, ...]:
            with conn.transaction():
                conn.execute(f"SELECT 1 FROM {table} WHERE id = 3")
                conn.execute(f"UPDATE {table} SET balance = 33 WHERE id = 3")
                row = conn.execute(f"SELECT balance FROM {table} WHERE id = 3").fetchone()
                assert row is not None
                return row

        result = in_thread(work)
        (record,) = pending(gw, "bot5")
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        assert result.result(timeout=15) == (33,)
    assert state(pg, table) == "1:100,2:100,3:33,4:100,5:100"


def test_denied_inside_a_transaction_leaves_it_usable(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot6", ("ai-agents",)) as conn:
        conn.autocommit = False
        conn.execute(f"SELECT 1 FROM {table}")
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 0 WHERE id = 1"))
        (record,) = pending(gw, "bot6")
        assert decide(gw, record["id"], "dora", ("dba",), "deny", "no").status_code == 200
        with pytest.raises(pgerrors.InsufficientPrivilege):
            result.result(timeout=15)
        conn.rollback()
        assert conn.execute("SELECT 5").fetchone() == (5,)
        conn.rollback()
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"


def test_asyncpg_holds_and_releases(gw: Gateway, pg: TestPg, table: str) -> None:
    async def run() -> Any:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=gw.port(),
            user="bot7",
            password=gw.token("bot7", ("ai-agents",)),
            database="bank",
            ssl="require",
        )
        try:
            task = asyncio.create_task(
                conn.fetchval(f"UPDATE {table} SET balance = $1 WHERE id = $2 RETURNING balance", 77, 4)
            )
            records = await asyncio.to_thread(pending, gw, "bot7")
            # asyncpg sends integers in binary: the record shows their size, never guesses a value
            assert records[0]["params_masked"] == ["<binary, 4 bytes>", "<binary, 4 bytes>"]
            response = await asyncio.to_thread(decide, gw, records[0]["id"], "dora", ("dba",), "approve")
            assert response.status_code == 200
            return await asyncio.wait_for(task, 15)
        finally:
            await conn.close()

    assert asyncio.run(run()) == 77
    assert state(pg, table) == "1:100,2:100,3:100,4:77,5:100"


# -- the session ends under a held statement -----------------------------------------------------------
def test_client_leaving_voids_the_request(gw: Gateway, pg: TestPg, table: str) -> None:
    conn = connect(gw, "bot8", ("ai-agents",))
    result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 0 WHERE id = 1"))
    (record,) = pending(gw, "bot8")
    conn.pgconn.finish()  # the socket closes under the waiting client
    with pytest.raises(psycopg.Error):
        result.result(timeout=15)
    assert closed_status(gw, record["id"]) == "void"
    late = decide(gw, record["id"], "dora", ("dba",), "approve")
    assert late.status_code == 409
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"


def test_psql_cancel_while_held(gw: Gateway, pg: TestPg, table: str) -> None:
    psql = require_binary("psql")
    proc = subprocess.Popen(
        [psql, gw.conninfo(user="bot9", groups=("ai-agents",)), "-X", "-v", "ON_ERROR_STOP=0",
         "-c", f"UPDATE {table} SET balance = 0 WHERE id = 1", "-c", "SELECT 'after'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        (record,) = pending(gw, "bot9")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "canceling statement due to user request" in err, err
    assert record["id"] in err  # the notice was printed while it waited
    assert closed_status(gw, record["id"]) == "void"
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"


def test_upstream_ending_the_session_voids_the_request(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot10", ("ai-agents",)) as conn:
        # the server ends a session idle in a transaction: a statement held inside BEGIN waits long
        conn.execute("SET idle_in_transaction_session_timeout = '1s'")
        conn.execute("BEGIN")
        conn.execute(f"SELECT 1 FROM {table}")
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 0 WHERE id = 1"))
        (record,) = pending(gw, "bot10")
        with pytest.raises(psycopg.Error) as info:
            result.result(timeout=15)
        # the upstream's own FATAL reaches the client first; the gateway's follows it
        assert "idle-in-transaction timeout" in str(info.value)
    assert closed_status(gw, record["id"]) == "void"
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"


# -- covers = "shape" ----------------------------------------------------------------------------------
def test_shape_approval_lets_the_same_shape_through_for_a_while(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "batcher", ("batch",)) as conn:
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 1 WHERE id = 1"))
        (record,) = pending(gw, "batcher")
        assert record["covers"]["kind"] == "shape" and record["covers"]["duration_ms"] == 600_000
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        result.result(timeout=15)
        # the same shape with other constants runs at once; another shape is held again
        conn.execute(f"UPDATE {table} SET balance = 2 WHERE id = 2")
        conn.execute(f"UPDATE {table} SET balance = 3 WHERE id = 3")
        other = in_thread(lambda: conn.execute(f"UPDATE {table} SET note = 'x' WHERE id = 4"))
        (second,) = pending(gw, "batcher")
        assert second["id"] != record["id"]
        assert decide(gw, second["id"], "dora", ("dba",), "deny", "no").status_code == 200
        with pytest.raises(pgerrors.InsufficientPrivilege):
            other.result(timeout=15)
    # another caller does not inherit the approval
    with connect(gw, "batcher2", ("batch",)) as conn:
        held = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 9 WHERE id = 5"))
        (third,) = pending(gw, "batcher2")
        assert decide(gw, third["id"], "dora", ("dba",), "deny", "no").status_code == 200
        with pytest.raises(pgerrors.InsufficientPrivilege):
            held.result(timeout=15)
    assert state(pg, table) == "1:1,2:2,3:3,4:100,5:100"


# -- signed records -----------------------------------------------------------------------------------
def test_records_verify_and_tampering_fails(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot11", ("ai-agents",)) as conn:
        result = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 11 WHERE id = 1"))
        (record,) = pending(gw, "bot11")
        decision = decide(gw, record["id"], "dora", ("dba",), "approve", "ok for close").json()["decision"]
        result.result(timeout=15)
    public = load_signing_key(gw.data_dir, create=False).public_key()
    verify_record(public, record)
    verify_record(public, decision)
    assert decision["request_digest"] == record_digest(record)
    for field, value in (
        ("statement", "SELECT 1"),
        ("rule", "dba"),
        ("expires_at", record["expires_at"] + 1),
    ):
        tampered = {**record, field: value}
        with pytest.raises(Exception, match="signature"):
            verify_record(public, tampered)
    # the CLI verifies the same records offline from a file
    path = gw.workdir / f"records-{record['id']}.json"
    path.write_bytes(orjson.dumps([record, decision]))
    assert len(load_records(path.read_bytes())) == 2
    ok = gw.run_cli("approvals", "verify", str(path))
    assert ok.returncode == 0, ok.stderr
    bad = dict(decision, reason="changed")
    path.write_bytes(orjson.dumps([record, bad]))
    failed = gw.run_cli("approvals", "verify", str(path))
    assert failed.returncode == 1 and "signature" in failed.stderr


# -- restart while a client waits -----------------------------------------------------------------------
def test_restart_while_waiting(gateway_factory: Any, pg: TestPg) -> None:
    gw: Gateway = gateway_factory(extra={"policy": [AGENTS, DBA]})
    name = f"acct_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {name} (id int PRIMARY KEY, balance int); INSERT INTO {name} VALUES (1, 100)",
        user="app",
    )
    try:
        conn = connect(gw, "bot12", ("ai-agents",))
        result = in_thread(lambda: conn.execute(f"UPDATE {name} SET balance = 0 WHERE id = 1"))
        (record,) = pending(gw, "bot12")
        assert gw.pid is not None
        os.kill(gw.pid, signal.SIGTERM)
        with pytest.raises(psycopg.Error) as info:
            result.result(timeout=20)
        message = str(info.value)
        assert record["id"] in message and "shutting down" in message
        conn.close()
        gw.stop()
        gw.start()
        # the request is still on record and decidable after the restart
        response = decide(gw, record["id"], "dora", ("dba",), "approve")
        assert response.status_code == 200 and response.json()["status"] == "approved"
        assert pg.psql(f"SELECT balance FROM {name}", user="app") == "100"
    finally:
        pg.psql(f"DROP TABLE {name}", user="app")


def test_the_request_carries_the_prompt_tag(gw: Gateway, pg: TestPg, table: str) -> None:
    conninfo = gw.conninfo(user="bot13", groups=("ai-agents",))
    with psycopg.connect(conninfo, autocommit=True, application_name="agent hoop:prompt=p_session") as conn:
        tagged = in_thread(
            lambda: conn.execute(f"/* hoop:prompt=p_stmt */ UPDATE {table} SET balance = 1 WHERE id = 1")
        )
        (first,) = pending(gw, "bot13")
        assert first["prompt_id"] == "p_stmt"  # the statement's own tag wins
        assert decide(gw, first["id"], "dora", ("dba",), "approve").status_code == 200
        tagged.result(timeout=15)
        untagged = in_thread(lambda: conn.execute(f"UPDATE {table} SET balance = 2 WHERE id = 2"))
        (second,) = pending(gw, "bot13")
        assert second["prompt_id"] == "p_session"  # else the session's application_name
        assert decide(gw, second["id"], "dora", ("dba",), "deny", "no").status_code == 200
        with pytest.raises(pgerrors.InsufficientPrivilege):
            untagged.result(timeout=15)
    requested = events(gw, "approval_requested", request_id=first["id"])
    assert requested and requested[0]["prompt_id"] == "p_stmt"
    assert state(pg, table) == "1:1,2:100,3:100,4:100,5:100"
