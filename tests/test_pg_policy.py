"""Statement policy through the REAL gateway with real clients (psql, psycopg, asyncpg, pgbench).

Every refusal is checked twice: the client gets SQLSTATE 42501 naming the rule and keeps a usable
session, and the upstream data is unchanged (read back as the DBA straight from Postgres).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import psycopg
import pytest
from psycopg import errors as pgerrors

from ._support.gateway import Gateway, PgConn
from ._support.pg import TestPg
from ._support.procs import require_binary, run

Conn = psycopg.Connection[tuple[Any, ...]]

AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "deny": ["ddl", "write-without-where"],
    "approvers": ["group:dba"],
    # writes are held for approval (tests/test_pg_approvals.py); here nobody decides, so they expire
    "approval_timeout": "1s",
}
READERS = {"name": "readers", "subjects": ["group:readers"], "connections": ["*"], "allow": ["read"]}
WRITERS = {
    "name": "writers",
    "subjects": ["group:writers"],
    "connections": ["*"],
    "allow": ["read", "write"],
    "deny": ["admin"],
}
DBA = {"name": "dba", "subjects": ["group:dba"], "connections": ["*"], "allow": ["*"]}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: Any) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        extra={"policy": [AGENTS, READERS, WRITERS, DBA]},
        gateway={"log_level": "debug"},
    )
    return gateway


@pytest.fixture(scope="module")
def table(gw: Gateway, pg: TestPg) -> Iterator[str]:
    name = f"acct_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {name} (id int PRIMARY KEY, owner text, balance int);"
        f"INSERT INTO {name} SELECT g, 'owner' || g, 100 FROM generate_series(1, 5) g;"
        f"CREATE SEQUENCE {name}_seq;"
        f"CREATE FUNCTION {name}_sneaky() RETURNS int LANGUAGE sql AS "
        f"$$ UPDATE {name} SET balance = 0 WHERE id = 1 RETURNING 1 $$;"
        f"CREATE FUNCTION {name}_legacy_strings() RETURNS text LANGUAGE sql AS "
        f"$$ SELECT set_config('standard_conforming_strings', 'off', false) $$;",
        user="app",
    )
    yield name


def connect(gw: Gateway, user: str, groups: tuple[str, ...], **kw: Any) -> Conn:
    return psycopg.connect(gw.conninfo(user=user, groups=groups), autocommit=True, **kw)


def state(pg: TestPg, table: str) -> str:
    return pg.psql(f"SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM {table}", user="app")


def refused(conn: Conn, sql: str, *params: Any, prepare: bool | None = None) -> pgerrors.Error:
    with pytest.raises(pgerrors.InsufficientPrivilege) as info:
        conn.execute(sql, params or None, prepare=prepare)
    assert info.value.sqlstate == "42501"
    # the session stays usable
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    return info.value


def events(gw: Gateway, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The recorded events of ``kind`` (waits a while for at least ``count``: the writer batches)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gw.data_dir / "audit.db") as db:
            rows = db.execute("SELECT data FROM events WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return [orjson.loads(r[0]) for r in rows]
        time.sleep(0.1)


# -- verdicts and messages -----------------------------------------------------------------------------
def test_agent_reads_and_is_refused_ddl_with_the_rule(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "bot", ("ai-agents",)) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (5,)
        err = refused(conn, f"CREATE TABLE {table}_x (id int)")
        assert err.diag.message_primary == 'hoopgw policy "agents" denies ddl statements for bot on "bankdb"'
        err = refused(conn, f"DELETE FROM {table}")
        assert 'policy "agents" denies write-without-where' in str(err.diag.message_primary)
        assert err.diag.message_detail is not None and "without WHERE" in err.diag.message_detail
        err = refused(conn, f"UPDATE {table} SET balance = 1 WHERE id = 2")
        assert "approval request" in str(err.diag.message_primary)
        assert "expired" in str(err.diag.message_primary)
        assert 'held by policy "agents"' in str(err.diag.message_detail)
        err = refused(conn, "GRANT SELECT ON pg_class TO public")
        assert err.diag.message_primary == 'hoopgw: no policy allows dcl statements for bot on "bankdb"'
    assert state(pg, table) == "1:100,2:100,3:100,4:100,5:100"
    pg.psql(f"SELECT 1 FROM {table}_seq", user="app")  # nothing was dropped or created
    denied = [e for e in events(gw, "policy_denied", 3) if e["subject"] == "bot"]
    assert {e["rule"] for e in denied} >= {"agents", None}
    ddl = next(e for e in denied if e["classes"] == ["ddl"])
    assert ddl["sql"] == f"CREATE TABLE {table}_x (id int)" and ddl["connection"] == "bankdb"
    held = [e for e in events(gw, "approval_requested", 1) if e["subject"] == "bot"]
    assert held and held[0]["rule"] == "agents" and held[0]["classes"] == ["write"]


EVASIONS = [
    "SELECT 1; DROP TABLE {t}",
    "/* harmless */ DROP TABLE {t}",
    "-- comment\nDROP TABLE {t}",
    "dRoP tAbLe {t}",
    "SELECT $$; DROP TABLE x; $$; DROP TABLE {t}",
    "WITH d AS (DELETE FROM {t} WHERE id = 1 RETURNING *) SELECT * FROM d",
    "SELECT * FROM (WITH d AS (UPDATE {t} SET balance = 0 WHERE id = 1 RETURNING *) SELECT * FROM d) s",
    "COPY (DELETE FROM {t} WHERE id = 1 RETURNING *) TO STDOUT",
    "EXPLAIN ANALYZE DELETE FROM {t} WHERE id = 1",
    "EXPLAIN (ANALYZE, BUFFERS) UPDATE {t} SET balance = 0 WHERE id = 1",
    "DO $x$ BEGIN DELETE FROM {t} WHERE id = 1; END $x$",
    "CREATE FUNCTION {t}_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "SELECT setval('{t}_seq', 99)",
    "SELECT nextval('{t}_seq')",
    "SELECT pg_catalog.pg_read_file('/etc/hostname')",
    "SELECT * FROM pg_read_file('/etc/hostname')",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SET default_transaction_read_only = off",
    "SET LOCAL transaction_read_only TO off",
    "BEGIN READ WRITE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET ROLE app",
    "SET SESSION AUTHORIZATION app",
    "COPY {t} TO PROGRAM 'cat > /tmp/x'",
    "SELECT * FROM {t} FOR UPDATE",
    "PREPARE p_{t} AS DELETE FROM {t} WHERE id = 1",
    "SELEC garbage",
    # SQL run from text by a function, and a settings view with an update rule (found by review)
    "SELECT * FROM ts_stat($q$SELECT to_tsvector(set_config('default_transaction_read_only','off',0))$q$)",
    "SELECT * FROM ts_rewrite('a'::tsquery, $q$SELECT 'a'::tsquery, 'b'::tsquery$q$)",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
]


@pytest.mark.parametrize("template", EVASIONS)
def test_evasions_are_refused_for_a_reader(gw: Gateway, pg: TestPg, table: str, template: str) -> None:
    before = state(pg, table)
    with connect(gw, "rita", ("readers",)) as conn:
        refused(conn, template.format(t=table))
        # also as one extended-protocol Parse (psycopg prepares with a named statement)
        if "PREPARE" not in template and ";" not in template:
            refused(conn, template.format(t=table), prepare=True)
    assert state(pg, table) == before
    assert pg.psql(f"SELECT last_value FROM {table}_seq", user="app") == "1"


def test_prepare_then_execute_keeps_the_class(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "will", ("writers",)) as conn:
        conn.execute(f"PREPARE upd AS UPDATE {table} SET balance = balance WHERE id = $1")
        conn.execute("EXECUTE upd(3)")
        conn.execute("PREPARE rd AS SELECT 1")
        assert conn.execute("EXECUTE rd").fetchone() == (1,)
        # an unknown name is not guessed to be harmless
        refused(conn, "EXECUTE never_prepared")
    with connect(gw, "bot", ("ai-agents",)) as conn:
        conn.execute("PREPARE rd AS SELECT 2")
        assert conn.execute("EXECUTE rd").fetchone() == (2,)
        refused(conn, f"PREPARE upd AS UPDATE {table} SET balance = 0 WHERE id = 3")
        # the refused PREPARE never reached the server, and EXECUTE of that name stays refused
        refused(conn, "EXECUTE upd")


def test_extended_protocol_decides_at_parse(gw: Gateway, pg: TestPg, table: str) -> None:
    before = state(pg, table)
    with connect(gw, "bot", ("ai-agents",)) as conn:
        # parameters in the extended protocol: the same shape with other values stays allowed
        for i in (1, 2, 3):
            assert conn.execute(f"SELECT balance FROM {table} WHERE id = %s", (i,), prepare=True).fetchone()
        err = refused(conn, f"UPDATE {table} SET balance = %s WHERE id = %s", 0, 1, prepare=True)
        assert "expired" in str(err.diag.message_primary)
        # a refused Parse inside a transaction: the client sees the error, the session recovers
        with pytest.raises(pgerrors.InsufficientPrivilege), conn.transaction():
            conn.execute(f"SELECT 1 FROM {table}")
            conn.execute(f"DELETE FROM {table}")
        assert conn.execute("SELECT 7").fetchone() == (7,)
    assert state(pg, table) == before


def test_read_only_upstream_stops_a_write_hidden_in_a_function(gw: Gateway, pg: TestPg, table: str) -> None:
    before = state(pg, table)
    with connect(gw, "rita", ("readers",)) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(pgerrors.ReadOnlySqlTransaction):
            conn.execute(f"SELECT {table}_sneaky()")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with connect(gw, "will", ("writers",)) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
    assert state(pg, table) == before


def test_writer_may_write_but_not_admin(gw: Gateway, pg: TestPg, table: str) -> None:
    with connect(gw, "will", ("writers",)) as conn:
        conn.execute(f"UPDATE {table} SET balance = balance + 0 WHERE id = %s", (5,))
        err = refused(conn, "SELECT pg_terminate_backend(pg_backend_pid() + 1000000)")
        assert (
            err.diag.message_primary == 'hoopgw policy "writers" denies admin statements for will on "bankdb"'
        )
        assert "pg_terminate_backend" in str(err.diag.message_detail)
        # write-without-where is a class of its own: nobody named it for writers
        refused(conn, f"UPDATE {table} SET balance = balance")


def test_no_policy_no_session(gw: Gateway) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        connect(gw, "eve", ("nobody",))
    assert 'no policy gives eve access to connection "bankdb"' in str(info.value)
    assert any(e["subject"] == "eve" for e in events(gw, "access_denied"))


def test_psql_shows_the_refusal_and_continues(gw: Gateway, table: str) -> None:
    result = run(
        gw.psql_cmd("-f", "-", user="bot", groups=("ai-agents",)),
        input=f"SELECT count(*) FROM {table};\nDROP TABLE {table};\nSELECT 'still here';\n",
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr  # ON_ERROR_STOP
    assert 'ERROR:  hoopgw policy "agents" denies ddl statements for bot on "bankdb"' in result.stderr
    no_stop = run(
        [require_binary("psql"), "-X", gw.conninfo(user="bot", groups=("ai-agents",)), "-At", "-f", "-"],
        input=f"DROP TABLE {table};\nSELECT 'still here';\n",
        timeout=60,
        check=False,
    )
    assert no_stop.stdout.strip() == "still here" and "42501" not in no_stop.stdout


def test_fast_path_function_call_is_admin(gw: Gateway, tmp_path: Any) -> None:
    src = tmp_path / "blob.txt"
    src.write_text("hello")
    psql = require_binary("psql")
    result = run(
        [psql, "-X", gw.conninfo(user="rita", groups=("readers",)), "-c", f"\\lo_import {src}"],
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "admin" in result.stderr, result.stderr
    ok = run(
        [psql, "-X", gw.conninfo(user="dora", groups=("dba",)), "-c", f"\\lo_import {src}"],
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("lo_import"), ok.stderr


def test_asyncpg_reader(gw: Gateway, table: str) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=gw.port(),
            user="rita",
            password=gw.token("rita", ("readers",)),
            database="bank",
            ssl="require",
        )
        try:
            for i in range(1, 4):
                assert await conn.fetchval(f"SELECT balance FROM {table} WHERE id = $1", i) is not None
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="no policy allows write"):
                await conn.execute(f"DELETE FROM {table} WHERE id = 1")
            assert await conn.fetchval("SELECT 5") == 5
        finally:
            await conn.close()

    asyncio.run(main())


def test_pgbench_select_only_as_reader(gw: Gateway, pg: TestPg) -> None:
    pgbench = require_binary("pgbench")
    dsn = gw.conninfo(user="dora", groups=("dba",))
    run([pgbench, "-i", "-s", "1", "-q", dsn], timeout=120, check=True)
    reader = gw.conninfo(user="rita", groups=("readers",))
    result = run([pgbench, "-S", "-n", "-t", "200", "-c", "2", reader], timeout=120, check=True)
    assert "number of transactions actually processed: 400/400" in result.stdout
    blocked = run([pgbench, "-n", "-t", "5", reader], timeout=60, check=False)
    assert blocked.returncode != 0 and "hoopgw" in blocked.stderr


def test_session_ends_when_the_token_expires(gateway_factory: Any) -> None:
    gw = gateway_factory(identity={"session_grace": "1s"})
    token = gw.token("alice", ("dev",), ttl="2s")
    conn = psycopg.connect(gw.conninfo(password=token), autocommit=True)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        deadline = time.monotonic() + 15
        with pytest.raises(psycopg.OperationalError, match="has expired"):
            while time.monotonic() < deadline:
                conn.execute("SELECT 1")
                time.sleep(0.2)
    finally:
        conn.close()


def test_a_session_whose_server_changes_a_guarded_setting_is_ended(
    gw: Gateway, pg: TestPg, table: str
) -> None:
    before = state(pg, table)
    with connect(gw, "rita", ("readers",)) as conn:
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
        # an existing function switches the server to parse strings differently: the gateway's
        # parse would no longer match the server's, so the session must end
        with pytest.raises(psycopg.Error, match="standard_conforming_strings=off"):
            conn.execute(f"SELECT {table}_legacy_strings()")
            conn.execute(f"SELECT 'a\\' -- ' ; DELETE FROM {table}; --")
        assert conn.closed or conn.broken
    assert state(pg, table) == before
    tripped = events(gw, "guard_tripped")
    assert tripped and tripped[-1]["parameter"] == "standard_conforming_strings=off"


def test_upstream_defaults_cannot_loosen_the_parse(gateway_factory: Any, pg: TestPg) -> None:
    db = f"legacy_{uuid.uuid4().hex[:6]}"
    pg.cluster.create_database(db, owner="app")
    pg.psql(f"ALTER DATABASE {db} SET standard_conforming_strings = off")
    pg.psql(f"ALTER DATABASE {db} SET default_transaction_read_only = off")
    pg.psql("CREATE TABLE victim (x int); INSERT INTO victim VALUES (1)", db=db, user="app")
    gw = gateway_factory([PgConn("legacydb", database=db)], extra={"policy": [READERS]})
    conninfo = gw.conninfo("legacydb", user="rita", groups=("readers",), dbname=db)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        # with the database default (off) the server would see a DROP after the string
        conn.execute("SELECT 'a\\' -- ' ; DROP TABLE victim; --")
    assert pg.psql("SELECT count(*) FROM victim", db=db, user="app") == "1"


def test_a_closing_time_window_ends_the_session(gateway_factory: Any, pg: TestPg, table: str) -> None:
    """Cursors, portals and prepared statements opened inside a window must not outlive it."""
    now = dt.datetime.now(dt.UTC)
    if now.second > 50:  # keep at least ~10 s of window for the set-up
        time.sleep(61 - now.second)
        now = dt.datetime.now(dt.UTC)
    minute = now.hour * 60 + now.minute
    start, end = max(minute - 1, 0), minute + 1
    hours = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    windowed = {
        "name": "night-shift",
        "subjects": ["group:shift"],
        "connections": ["*"],
        "allow": ["write"],
        "window": {"hours": hours, "timezone": "UTC"},
    }
    gw = gateway_factory(extra={"policy": [READERS, windowed]})
    closes = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    with psycopg.connect(gw.conninfo(user="sam", groups=("readers", "shift"))) as conn:
        conn.execute(f"DECLARE c CURSOR FOR SELECT nextval('{table}_seq') FROM generate_series(1, 100)")
        assert conn.execute("FETCH 1 FROM c").fetchone() is not None  # inside the window: allowed
        time.sleep(max(0.0, (closes - dt.datetime.now(dt.UTC)).total_seconds()) + 1.0)
        with pytest.raises(psycopg.Error, match="time window closed"):
            conn.execute("FETCH 10 FROM c")
    assert pg.psql(f"SELECT last_value FROM {table}_seq", user="app") == "1"
    closed = events(gw, "policy_window_closed")
    assert closed and closed[0]["classes"] == ["write"]
