"""Real PostgreSQL client libraries through the REAL gateway: psycopg 3, asyncpg and pgbench.

Extended protocol with parameters, binary results, pipeline mode, COPY both ways, server-side cancel (in
cleartext and inside TLS), LISTEN/NOTIFY with the upstream's real backend PID, NOTICE passthrough, and the
audit record a parameterised session leaves behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb

from ._support.gateway import Gateway, PgConn
from ._support.pg import TestPg
from ._support.procs import require_binary, run

Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture(scope="module")
def gw(module_gateway: Gateway) -> Gateway:
    return module_gateway


def connect(gw: Gateway, app: str, *, autocommit: bool = True, user: str = "alice") -> Conn:
    return psycopg.connect(gw.conninfo(user=user, application_name=app), autocommit=autocommit)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def wait_sleeping(admin: Conn, pid: int) -> None:
    def sleeping() -> bool:
        row = admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND query LIKE %s",
            (pid, "%pg_sleep%"),
        ).fetchone()
        return row is not None

    wait_for(f"backend {pid} to run pg_sleep", sleeping)


def recorded_session(gw: Gateway, app: str, *, min_statements: int = 0) -> dict[str, Any]:
    """The closed audit session whose application_name is ``app``, with ``statements`` (bounded poll)."""
    found: dict[str, Any] = {}

    def closed() -> bool:
        res = gw.run_cli("sessions", "list", "--json", "--limit", "500")
        assert res.returncode == 0, res.stderr
        matches = [s for s in json.loads(res.stdout) if s["params"].get("application_name") == app]
        assert len(matches) <= 1, matches
        if not matches or matches[0]["status"] != "closed" or matches[0]["statements"] < min_statements:
            return False
        shown = gw.run_cli("sessions", "show", matches[0]["id"], "--json")
        assert shown.returncode == 0, shown.stderr
        (session,) = json.loads(shown.stdout)
        found.update(session)
        found["statements"] = [e["data"] for e in session["events"] if e["kind"] == "statement"]
        return True

    wait_for(f"the closed audit session {app!r}", closed, timeout=15.0)
    return found


# ------------------------------------------------------------------------------------------ psycopg 3
def test_extended_protocol_with_parameters(gw: Gateway) -> None:
    table = unique("ext")
    with connect(gw, "psycopg-extended") as conn:
        conn.execute(
            f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, name text, amount numeric, born date, raw bytea)"
        )
        rows = [
            (1, "ada", Decimal("10.50"), dt.date(1815, 12, 10), b"\x00\x01"),
            (2, "bob's", Decimal("-3"), None, None),
            (3, "ünïcødé ☃", Decimal("0.001"), dt.date(2000, 2, 29), b"\xff" * 300),
        ]
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", rows)
            assert cur.rowcount == 3
            cur.execute(f"SELECT * FROM {table} WHERE id = ANY(%s) ORDER BY id", ([1, 2, 3],))
            assert cur.fetchall() == rows
            # A server-side prepared statement (named), executed many times with new parameters.
            for i in (1, 2, 3, 1, 2, 3):
                cur.execute(f"SELECT name FROM {table} WHERE id = %s", (i,), prepare=True)
                assert cur.fetchone() == (rows[i - 1][1],)
            # Parameters never become SQL: an injection attempt is just a string.
            cur.execute(f"SELECT count(*) FROM {table} WHERE name = %s", ("x' OR '1'='1",))
            assert cur.fetchone() == (0,)
            cur.execute("SELECT %s::int + %s::int, %s::text IS NULL", (40, 2, None))
            assert cur.fetchone() == (42, True)
        # An error in the extended protocol reaches the client with its SQLSTATE; the session goes on.
        with pytest.raises(pgerrors.UniqueViolation):
            conn.execute(f"INSERT INTO {table} (id) VALUES (%s)", (1,))
        with pytest.raises(pgerrors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table WHERE x = %s", (1,))
        assert conn.execute("SELECT %s", ("still fine",)).fetchone() == ("still fine",)


def test_binary_results(gw: Gateway) -> None:
    with connect(gw, "psycopg-binary") as conn, conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT %s::int8, %s::float8, %s::text, %s::bytea, %s::timestamptz, %s::int[], %s::jsonb,"
            " %s::uuid",
            (
                2**62,
                1.5,
                "tekst",
                b"\x00\xff\x00",
                dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                [1, None, 3],
                Jsonb({"a": [1, 2]}),
                uuid.UUID(int=7),
            ),
        )
        row = cur.fetchone()
        assert cur.pgresult is not None
        assert all(cur.pgresult.fformat(i) == 1 for i in range(cur.pgresult.nfields)), "not binary"
        assert row == (
            2**62,
            1.5,
            "tekst",
            b"\x00\xff\x00",
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            [1, None, 3],
            {"a": [1, 2]},
            uuid.UUID(int=7),
        )
        # Many binary rows (several socket reads' worth) arrive intact.
        cur.execute("SELECT g, md5(g::text)::bytea FROM generate_series(1, 20000) g")
        got = cur.fetchall()
        assert len(got) == 20000
        assert got[-1][0] == 20000 and len(got[-1][1]) == 32


def test_pipeline_mode(gw: Gateway) -> None:
    table = unique("pipe")
    with connect(gw, "psycopg-pipeline") as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (id serial PRIMARY KEY, v int NOT NULL)")
        with conn.pipeline() as pipeline:
            c1 = conn.execute(f"INSERT INTO {table} (v) VALUES (%s) RETURNING id", (10,))
            c2 = conn.execute(f"INSERT INTO {table} (v) VALUES (%s) RETURNING id", (20,))
            with conn.cursor() as many:
                many.executemany(f"INSERT INTO {table} (v) VALUES (%s)", [(i,) for i in range(100)])
            c3 = conn.execute(f"SELECT count(*), sum(v) FROM {table}")
            pipeline.sync()
            c4 = conn.execute("SELECT pg_backend_pid()")
        assert c1.fetchone() == (1,)
        assert c2.fetchone() == (2,)
        assert c3.fetchone() == (102, 30 + sum(range(100)))
        assert c4.fetchone() == (conn.info.backend_pid,)
        # An error inside a pipeline surfaces; the batch up to the Sync is one implicit transaction, so the
        # INSERT before the error is rolled back and the one after it never runs. The session lives on.
        with pytest.raises(pgerrors.DivisionByZero), conn.pipeline():
            conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (1000,))
            conn.execute("SELECT 1 / %s", (0,))
            conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (2000,))
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE v >= 1000").fetchone() == (0,)
        assert conn.execute("SELECT 'after pipeline'").fetchone() == ("after pipeline",)


def test_copy_from_stdin_and_to_stdout(gw: Gateway) -> None:
    table = unique("copy")
    n = 30000
    with connect(gw, "psycopg-copy") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE {table} (id int, name text, amount numeric)")
        with cur.copy(f"COPY {table} (id, name, amount) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((i, f"name\t{i}\n", Decimal(i) / 100))
        assert cur.rowcount == n
        with cur.copy(f"COPY {table} (id, name, amount) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "numeric"])
            copy.write_row((-1, "binary", Decimal("1.25")))
        assert cur.rowcount == 1
        cur.execute(f"SELECT count(*), sum(id), sum(amount) FROM {table}")
        assert cur.fetchone() == (
            n + 1,
            sum(range(n)) - 1,
            sum(Decimal(i) / 100 for i in range(n)) + Decimal("1.25"),
        )
        # COPY TO STDOUT, text and binary.
        with cur.copy(f"COPY (SELECT id, name FROM {table} ORDER BY id) TO STDOUT") as copy:
            out = list(copy.rows())
        assert len(out) == n + 1
        assert out[0] == ("-1", "binary") and out[1] == ("0", "name\t0\n")
        with cur.copy(
            f"COPY (SELECT id, amount FROM {table} WHERE id < 3 ORDER BY id) TO STDOUT (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "numeric"])
            assert list(copy.rows()) == [
                (-1, Decimal("1.25")),
                (0, Decimal(0)),
                (1, Decimal("0.01")),
                (2, Decimal("0.02")),
            ]
        raw = io.BytesIO()
        with cur.copy(
            f"COPY (SELECT id FROM {table} WHERE id BETWEEN 0 AND 4 ORDER BY id) TO STDOUT"
        ) as copy:
            for block in copy:
                raw.write(block)
        assert raw.getvalue() == b"0\n1\n2\n3\n4\n"
        # Bad data in COPY FROM: the server's error reaches the client and the session is usable.
        with (
            pytest.raises(pgerrors.InvalidTextRepresentation),
            cur.copy(f"COPY {table} (id) FROM STDIN") as copy,
        ):
            copy.write(b"1\nnot-a-number\n")
        # The client aborting a COPY (CopyFail) is relayed too.
        with pytest.raises(ZeroDivisionError), cur.copy(f"COPY {table} (id) FROM STDIN") as copy:
            copy.write_row((5,))
            _ = 1 / 0
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        cur.execute(f"SELECT count(*) FROM {table}")
        assert cur.fetchone() == (n + 1,)


@pytest.mark.parametrize("how", ["cancel", "cancel_safe"])
def test_server_side_cancel(gw: Gateway, admin: Conn, how: str) -> None:
    """``cancel()`` sends the CancelRequest in cleartext; ``cancel_safe()`` (libpq >= 17) inside TLS."""
    with connect(gw, f"psycopg-{how}") as conn:
        pid = conn.info.backend_pid
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
        sent: list[float] = []

        def cancel_when_sleeping() -> None:
            wait_sleeping(admin, pid)
            sent.append(time.monotonic())
            if how == "cancel":
                conn.cancel()
            else:
                conn.cancel_safe(timeout=10)

        canceller = threading.Thread(target=cancel_when_sleeping)
        canceller.start()
        try:
            with pytest.raises(pgerrors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
            arrived = time.monotonic()
        finally:
            canceller.join(20)
        assert not canceller.is_alive() and sent
        assert arrived - sent[0] < 5.0
        # Same session, same backend, still usable.
        assert conn.execute("SELECT pg_backend_pid(), 'alive'").fetchone() == (pid, "alive")


def test_listen_notify_carries_the_real_backend_pid(gw: Gateway, admin: Conn) -> None:
    channel = unique("chan")
    with connect(gw, "psycopg-listen") as listener, connect(gw, "psycopg-notify") as sender:
        listener.execute(f"LISTEN {channel}")
        sender_pid = sender.info.backend_pid
        assert sender.execute("SELECT pg_backend_pid()").fetchone() == (sender_pid,)
        assert sender_pid != listener.info.backend_pid
        # These are real upstream backends, not gateway-made numbers.
        row = admin.execute(
            "SELECT usename, application_name FROM pg_stat_activity WHERE pid = %s", (sender_pid,)
        ).fetchone()
        assert row == ("app", "psycopg-notify")
        sender.execute("SELECT pg_notify(%s, %s)", (channel, "payload ☃"))
        sender.execute(f"NOTIFY {channel}, 'second'")
        got = list(listener.notifies(timeout=5.0, stop_after=2))
        assert [(n.channel, n.payload, n.pid) for n in got] == [
            (channel, "payload ☃", sender_pid),
            (channel, "second", sender_pid),
        ]
        # A session notifying itself sees its own pid, which is its BackendKeyData pid.
        listener.execute(f"NOTIFY {channel}, 'self'")
        (own,) = list(listener.notifies(timeout=5.0, stop_after=1))
        assert own.pid == listener.info.backend_pid
        assert listener.execute("SELECT pg_backend_pid()").fetchone() == (own.pid,)


def test_notice_passthrough(gw: Gateway) -> None:
    notices: list[tuple[str | None, str | None, str | None, str | None]] = []

    def on_notice(d: psycopg.errors.Diagnostic) -> None:
        # A Diagnostic is only valid inside the handler.
        notices.append((d.severity, d.sqlstate, d.message_primary, d.message_hint))

    with connect(gw, "psycopg-notice") as conn:
        conn.add_notice_handler(on_notice)
        conn.execute(
            "DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful' USING HINT = 'a hint'; END $$"
        )
        assert conn.execute("SELECT 'after notices'").fetchone() == ("after notices",)
        # A notice inside an extended-protocol statement, between its rows and its CommandComplete.
        conn.execute(
            "CREATE FUNCTION pg_temp.noisy(x int) RETURNS int LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE NOTICE 'noisy %', x; RETURN x; END $$"
        )
        assert conn.execute("SELECT pg_temp.noisy(%s)", (7,)).fetchone() == (7,)
    assert notices == [
        ("NOTICE", "00000", "hello 42", None),
        ("WARNING", "01000", "careful", "a hint"),
        ("NOTICE", "00000", "noisy 7", None),
    ]


def test_audit_record_of_a_parameterised_session(gw: Gateway) -> None:
    app = unique("audit")
    table = unique("aud")
    with connect(gw, app, user="carol") as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (id int, note text)")
        # %t sends parameters in text format; with %s psycopg sends numbers in binary.
        conn.execute(f"INSERT INTO {table} VALUES (%t, %t), (%t, %t)", (1, "one", 2, None))
        conn.execute(
            f"SELECT note FROM {table} WHERE id >= %s AND note IS DISTINCT FROM %s", (1, "zzz")
        ).fetchall()
        with pytest.raises(pgerrors.DivisionByZero):
            conn.execute("SELECT %s::int / 0", (7,))
    session = recorded_session(gw, app, min_statements=4)
    assert session["subject"] == "carol"
    assert session["groups"] == ["dev"]
    assert session["connection"] == "bankdb"
    assert session["client_addr"].startswith("127.0.0.1:")
    stmts = session["statements"]
    insert = next(s for s in stmts if s["sql"].startswith(f"INSERT INTO {table}"))
    assert insert["sql"] == f"INSERT INTO {table} VALUES ($1, $2), ($3, $4)"
    assert insert["kind"] == "execute"
    assert insert["params"] == ["1", "one", "2", None]
    assert (insert["tags"], insert["rows"], insert["status"]) == (["INSERT 0 2"], 2, "ok")
    select = next(s for s in stmts if s["sql"].startswith(f"SELECT note FROM {table}"))
    assert select["params"] == ["\\x0001", "zzz"]  # int2 in binary, shown as hex
    assert (select["tags"], select["rows"], select["status"]) == (["SELECT 2"], 2, "ok")
    failed = next(s for s in stmts if s["sql"] == "SELECT $1::int / 0")
    assert failed["params"] == ["\\x0007"]
    assert failed["status"] == "error"
    assert failed["error"]["sqlstate"] == "22012"
    assert all(s["duration_ms"] >= 0 for s in stmts)


# ------------------------------------------------------------------------------------------ asyncpg
def _asyncpg_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _asyncpg_connect(gw: Gateway, token: str, app: str) -> Any:
    return await asyncpg.connect(
        host="127.0.0.1",
        port=gw.port(),
        user="dave",
        password=token,
        database="bank",
        ssl=_asyncpg_tls(),
        timeout=10,
        server_settings={"application_name": app},
    )


def test_asyncpg_prepared_statements_copy_and_fetch(gw: Gateway) -> None:
    token = gw.token("dave", ["ops"])
    table = unique("apg")
    app = unique("asyncpg")

    async def main() -> None:
        conn = await _asyncpg_connect(gw, token, app)
        try:
            assert await conn.fetchval("SELECT pg_backend_pid()") == conn.get_server_pid()
            await conn.execute(f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, name text, score float8)")
            # One prepared statement, executed many times.
            stmt = await conn.prepare("SELECT $1::int * 2 AS doubled, upper($2::text) AS shout")
            for i in range(20):
                row = await stmt.fetchrow(i, f"n{i}")
                assert (row["doubled"], row["shout"]) == (i * 2, f"N{i}")
            # COPY FROM STDIN with binary records.
            records = [(i, f"name {i}", i / 4) for i in range(5000)]
            result = await conn.copy_records_to_table(table, records=records, columns=["id", "name", "score"])
            assert result == "COPY 5000"
            # fetch with parameters (asyncpg's statement cache reuses the named statement).
            for lo in (10, 20, 10):
                rows = await conn.fetch(
                    f"SELECT id, name FROM {table} WHERE id >= $1 AND id < $2 ORDER BY id", lo, lo + 3
                )
                assert [tuple(r) for r in rows] == [(i, f"name {i}") for i in range(lo, lo + 3)]
            assert await conn.fetchval(f"SELECT sum(score) FROM {table}") == sum(r[2] for r in records)
            # COPY TO STDOUT.
            out = io.BytesIO()
            await conn.copy_from_query(f"SELECT id FROM {table} WHERE id < $1 ORDER BY id", 3, output=out)
            assert out.getvalue() == b"0\n1\n2\n"
            # An error with asyncpg, then business as usual.
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(f"INSERT INTO {table} (id) VALUES ($1)", 1)
            assert [tuple(r) for r in await stmt.fetch(21, "x")] == [(42, "X")]
        finally:
            await asyncio.wait_for(conn.close(), 10)

    asyncio.run(asyncio.wait_for(main(), 60))
    session = recorded_session(gw, app, min_statements=20)
    assert session["subject"] == "dave" and session["groups"] == ["ops"]
    prepared = [
        s
        for s in session["statements"]
        if s["sql"] == "SELECT $1::int * 2 AS doubled, upper($2::text) AS shout"
    ]
    # Every execution of the prepared statement is on record, with its binary parameters. fetchrow()
    # executes with a row limit of 1, so the server suspends the portal; fetch() runs it to completion.
    assert len(prepared) == 21
    assert all(s["kind"] == "execute" and s["statement_name"].startswith("__asyncpg_") for s in prepared)
    assert [(s["params"], s["status"], s["rows"]) for s in prepared[:2]] == [
        (["\\x00000000", "\\x6e30"], "suspended", 1),
        (["\\x00000001", "\\x6e31"], "suspended", 1),
    ]
    assert all(s["status"] == "suspended" for s in prepared[:20])
    last = prepared[20]
    assert (last["params"], last["status"], last["tags"], last["rows"]) == (
        ["\\x00000015", "\\x78"],
        "ok",
        ["SELECT 1"],
        1,
    )
    copy = next(s for s in session["statements"] if s["sql"].startswith("COPY"))
    assert copy["tags"] == ["COPY 5000"] and copy["rows"] == 5000


def test_asyncpg_listener(gw: Gateway) -> None:
    token = gw.token("dave", ["ops"])
    channel = unique("achan")

    async def main() -> None:
        listener = await _asyncpg_connect(gw, token, "asyncpg-listen")
        sender = await _asyncpg_connect(gw, token, "asyncpg-notify")
        try:
            got: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
            await listener.add_listener(
                channel, lambda _c, pid, ch, payload: got.put_nowait((pid, ch, payload))
            )
            await sender.execute("SELECT pg_notify($1, $2)", channel, "from asyncpg")
            pid, ch, payload = await asyncio.wait_for(got.get(), 5)
            assert (ch, payload) == (channel, "from asyncpg")
            assert pid == sender.get_server_pid() == await sender.fetchval("SELECT pg_backend_pid()")
        finally:
            await asyncio.wait_for(listener.close(), 10)
            await asyncio.wait_for(sender.close(), 10)

    asyncio.run(asyncio.wait_for(main(), 60))


# ------------------------------------------------------------------------------------------ pgbench
BENCH_DB = "hoopgw_pgbench"


@pytest.fixture(scope="module")
def bench_gw(module_gateway_factory: Any, pg: TestPg) -> Gateway:
    """A gateway connection whose upstream is a database of its own, initialised by ``pgbench -i``."""
    pg.cluster.psql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    pg.cluster.create_database(BENCH_DB, owner="app")
    gw: Gateway = module_gateway_factory([PgConn("benchdb", database=BENCH_DB)])
    res = run(
        [require_binary("pgbench"), "-i", "-s", "1", "-q", gw.conninfo("benchdb", dbname=BENCH_DB)],
        timeout=90,
    )
    assert res.returncode == 0, res.stdout + res.stderr + gw.log_tail()
    assert "done in" in res.stderr, res.stderr
    return gw


def test_pgbench_init_through_the_gateway(bench_gw: Gateway, pg: TestPg) -> None:
    # The tables were made (and filled with COPY) through the gateway, in the configured upstream database.
    assert pg.psql("SELECT count(*) FROM pgbench_accounts", db=BENCH_DB) == "100000"
    assert pg.psql("SELECT count(*) FROM pgbench_branches", db=BENCH_DB) == "1"
    assert (
        pg.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'pgbench_accounts'", db=BENCH_DB) == "app"
    )


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(bench_gw: Gateway, mode: str) -> None:
    res = run(
        [
            require_binary("pgbench"),
            "-S", "-T", "3", "-c", "4", "-j", "2", "-M", mode, "-n",
            bench_gw.conninfo("benchdb", dbname=BENCH_DB, application_name=f"pgbench-{mode}"),
        ],
        timeout=60,
    )  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 0, out + bench_gw.log_tail()
    assert f"query mode: {mode}" in out
    assert "number of clients: 4" in out
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed is not None and int(processed.group(1)) > 100, out
    failed = re.search(r"number of failed transactions: (\d+)", out)
    assert failed is None or failed.group(1) == "0", out
    assert re.search(r"tps = \d+", out), out
