"""psql through the gateway: queries, \\copy both ways, errors, and what lands in the audit store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import wait_until


def _sessions(gw: Gateway) -> list[dict[str, object]]:
    res = gw.run_cli("sessions", "list", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert isinstance(data, list)
    return data


def _wait_session(gw: Gateway, application_name: str) -> dict[str, Any]:
    """The closed session whose application_name matches (the writer flushes within 200 ms).

    Its ``statements`` are the recorded statement events' data, in order.
    """
    found: dict[str, Any] = {}

    def closed() -> bool:
        for s in _sessions(gw):
            res = gw.run_cli("sessions", "show", str(s["id"]), "--json")
            (session,) = json.loads(res.stdout)
            if session["params"].get("application_name") == application_name and s["status"] == "closed":
                found.update(session)
                found["statements"] = [e["data"] for e in session["events"] if e["kind"] == "statement"]
                return True
        return False

    wait_until(closed, timeout=10, what=f"closed session {application_name}")
    return found


def test_simple_queries_and_audit_record(module_gateway: Gateway, pg: TestPg) -> None:
    gw = module_gateway
    res = gw.psql(
        "CREATE TEMP TABLE t(id int, note text);\n"
        "INSERT INTO t VALUES (1, 'one'), (2, 'two');\n"
        "SELECT id, note FROM t ORDER BY id;\n"
        "SELECT 1/1 AS a; SELECT 'x' AS b;\n",
        application_name="psql-audit",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1|one", "2|two", "1", "x"]
    session = _wait_session(gw, "psql-audit")
    assert session["type"] == "postgres"
    assert session["subject"] == "alice"
    assert session["connection"] == "bankdb"
    stmts = session["statements"]
    assert isinstance(stmts, list)
    by_sql = {s["sql"].strip(): s for s in stmts}
    insert = by_sql["INSERT INTO t VALUES (1, 'one'), (2, 'two');"]
    assert insert["tags"] == ["INSERT 0 2"] and insert["rows"] == 2 and insert["status"] == "ok"
    select = by_sql["SELECT id, note FROM t ORDER BY id;"]
    assert select["tags"] == ["SELECT 2"] and select["rows"] == 2
    # psql sends each statement of a line separately; both are on record in order.
    sqls = [s["sql"].strip() for s in stmts]
    assert sqls.index("SELECT 1/1 AS a;") < sqls.index("SELECT 'x' AS b;")
    # The upstream password never reaches the store or the log.
    password = pg.password("app")
    assert password
    assert password.encode() not in (gw.data_dir / "audit.db").read_bytes()
    assert password not in gw.log_text()


def test_multi_statement_query_is_one_record_with_every_tag(module_gateway: Gateway) -> None:
    gw = module_gateway
    res = gw.psql(
        "", "-c", "SELECT 1; SELECT 2, 3; CREATE TEMP TABLE m(x int)", application_name="psql-multi"
    )
    assert res.returncode == 0, res.stderr
    session = _wait_session(gw, "psql-multi")
    stmts = [s for s in session["statements"] if "SELECT 2, 3" in s["sql"]]
    assert len(stmts) == 1
    assert stmts[0]["tags"] == ["SELECT 1", "SELECT 1", "CREATE TABLE"]


def test_errors_reach_the_client_and_the_record(module_gateway: Gateway) -> None:
    gw = module_gateway
    res = gw.psql("SELECT 1/0;", application_name="psql-error")
    assert res.returncode != 0
    assert "division by zero" in res.stderr
    session = _wait_session(gw, "psql-error")
    failed = [s for s in session["statements"] if s["status"] == "error"]
    assert failed and failed[0]["error"]["sqlstate"] == "22012"
    assert "division by zero" in failed[0]["error"]["message"]
    # The session stays usable after an error when the client goes on.
    res = gw.psql("", "-v", "ON_ERROR_STOP=0", "-c", "SELECT 1/0", "-c", "SELECT 'after'")
    assert "after" in res.stdout and "division by zero" in res.stderr


def test_copy_in_and_out_with_psql(module_gateway: Gateway, pg: TestPg, tmp_path: Path) -> None:
    gw = module_gateway
    pg.cluster.psql(
        "DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t(id int, name text)", db="bank", user="app"
    )
    src = tmp_path / "in.csv"
    rows = [f"{i},name {i}" for i in range(1, 2001)]
    src.write_text("\n".join(rows) + "\n")
    res = gw.psql(f"\\copy copy_t FROM '{src}' WITH (FORMAT csv)\n", application_name="psql-copy")
    assert res.returncode == 0, res.stderr
    assert pg.cluster.psql("SELECT count(*), sum(id) FROM copy_t", db="bank") == "2000|2001000"
    out = tmp_path / "out.csv"
    res = gw.psql(f"\\copy (SELECT * FROM copy_t ORDER BY id) TO '{out}' WITH (FORMAT csv)\n")
    assert res.returncode == 0, res.stderr
    assert out.read_text().splitlines() == rows
    session = _wait_session(gw, "psql-copy")
    copies = [s for s in session["statements"] if s["sql"].lstrip().upper().startswith("COPY")]
    assert copies and copies[0]["tags"] == ["COPY 2000"] and copies[0]["rows"] == 2000


def test_large_result_arrives_intact(module_gateway: Gateway) -> None:
    res = module_gateway.psql("SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g;")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 20000
    assert lines[-1] == "20000|" + "x" * 500
