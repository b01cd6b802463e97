"""Result previews end to end: real PostgreSQL, the real gateway with masking, ``hoopgw replay``.

A statement record keeps the first rows of its result as the client got them, so the preview is
masked like the rows on the wire; the raw values in the database never reach the audit store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from hoopgw.audit._replay import Entry
from hoopgw.cli._replay import Painter, render

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import run, wait_until

Conn = psycopg.Connection[tuple[Any, ...]]

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
EMAIL = "carol.danvers@example.com"
RAW = [CARD, CARD_DIGITS, EMAIL]
LONG = "z" * 300

MASKING = {
    "masking": [
        {"connections": ["bankdb"], "detectors": ["credit_card", "email"], "style": "last4"},
    ]
}


@pytest.fixture(scope="module")
def data(pg: TestPg) -> Iterator[None]:
    """Seven rows with cards, an email, a NULL and a long value, written straight to the database."""
    with psycopg.connect(pg.dsn("app"), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS preview_cards")
        conn.execute("CREATE TABLE preview_cards (id int PRIMARY KEY, card text, note text)")
        rows = [(1, CARD, EMAIL), (2, CARD_DIGITS, None), (3, "none", LONG)]
        rows += [(i, f"plain {i}", f"note {i}") for i in range(4, 8)]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO preview_cards VALUES (%s, %s, %s)", rows)
        conn.execute("GRANT ALL ON preview_cards TO PUBLIC")
        yield
        conn.execute("DROP TABLE IF EXISTS preview_cards")


@pytest.fixture(scope="module")
def gw(module_gateway_factory: Any, data: None) -> Gateway:
    gateway: Gateway = module_gateway_factory(extra=MASKING)
    return gateway


def statement(gw: Gateway, sql: str) -> tuple[str, dict[str, Any]]:
    """The session id and data of the recorded statement whose SQL is ``sql`` (waits for it)."""
    found: list[tuple[str, dict[str, Any]]] = []

    def recorded() -> bool:
        with sqlite3.connect(gw.data_dir / "audit.db") as db:
            for sid, text in db.execute("SELECT session_id, data FROM events WHERE kind = 'statement'"):
                event = json.loads(text)
                if event.get("sql") == sql:
                    found.append((sid, event))
                    return True
        return False

    wait_until(recorded, timeout=15, what=f"the statement record of {sql!r}")
    return found[0]


def store_bytes(gw: Gateway) -> bytes:
    """Every byte of the audit store (the database file and its write-ahead log)."""
    return b"".join(p.read_bytes() for p in sorted(gw.data_dir.glob("audit.db*")))


def test_preview_holds_masked_rows_and_replay_shows_them(gw: Gateway) -> None:
    sql = "SELECT id, card, note FROM preview_cards ORDER BY id"
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        rows = conn.execute(sql).fetchall()
        assert len(rows) == 7 and rows[0][:2] == (1, "**** **** **** 1111") and EMAIL not in rows[0][2]
        # binary results: values shown as hex
        with conn.cursor(binary=True) as cur:
            assert cur.execute("SELECT 1::int4 AS one").fetchone() == (1,)
        # a column name with a card in it: the name is masked in the record too
        conn.execute(f'SELECT 2 AS "{CARD}"').fetchone()
    sid, event = statement(gw, sql)
    assert event["rows"] == 7
    preview = event["preview"]
    assert preview["columns"] == ["id", "card", "note"]
    assert len(preview["rows"]) == 5, "preview_rows defaults to 5"
    first, second, third = preview["rows"][:3]
    assert first[:2] == ["1", "**** **** **** 1111"] and EMAIL not in first[2] and first[2].endswith(".com")
    assert second == ["2", "************1111", None]
    assert third[2] == "z" * 200 + "…", "cut at preview_chars (default 200)"
    _, binary = statement(gw, "SELECT 1::int4 AS one")
    assert binary["preview"] == {"columns": ["one"], "rows": [["\\x00000001"]]}
    _, named = statement(gw, 'SELECT 2 AS "**** **** **** 1111"')
    assert named["preview"] == {"columns": ["**** **** **** 1111"], "rows": [["2"]]}

    stored = store_bytes(gw)
    for raw in RAW:
        assert raw.encode() not in stored, f"{raw!r} in the audit store"
    for raw in RAW:
        assert raw not in gw.log_text()

    shown = gw.run_cli("replay", sid, "--no-wait")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == sql)
    table = lines[at + 1 : at + 9]
    widths = "-" * 2, "-" * len("**** **** **** 1111"), "-" * 201
    assert table[0].split(" | ") == ["           id", "card               ", "note"]
    assert table[1] == "           " + "-+-".join(widths)
    assert table[2].startswith("           1  | **** **** **** 1111 | ") and EMAIL not in table[2]
    assert table[3] == "           2  | ************1111    | NULL"
    assert table[7] == "           (2 more rows not recorded)"
    as_json = json.loads(gw.run_cli("replay", sid, "--json").stdout)
    previews = [e["fields"].get("preview") for e in as_json if e["kind"] == "statement"]
    assert preview in previews
    for raw in RAW:
        assert raw not in shown.stdout


def test_simple_protocol_multi_statement_previews_the_first_result_with_rows(gw: Gateway) -> None:
    sql = "SELECT 1 WHERE false; SELECT card FROM preview_cards WHERE id = 2; SELECT 'other'"
    res = run(gw.psql_cmd("-c", sql), timeout=60)  # -c: one Query message with the three statements
    assert res.returncode == 0, res.stderr
    _, event = statement(gw, sql)
    assert event["preview"] == {"columns": ["card"], "rows": [["************1111"]]}


def test_no_preview_for_commands_without_rows_or_copy(gw: Gateway) -> None:
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT id FROM preview_cards WHERE false")
        with conn.cursor() as cur, cur.copy("COPY preview_cards TO STDOUT") as copy:
            out = b"".join(bytes(chunk) for chunk in copy)
        assert CARD.encode() not in out
    for sql in ("SELECT id FROM preview_cards WHERE false", "COPY preview_cards TO STDOUT"):
        _, event = statement(gw, sql)
        assert "preview" not in event
    assert event["rows"] == 7


def test_preview_rows_zero_turns_previews_off(module_gateway_factory: Any, data: None) -> None:
    off: Gateway = module_gateway_factory(extra={**MASKING, "audit": {"preview_rows": 0}})
    sql = "SELECT id, card FROM preview_cards ORDER BY id"
    with psycopg.connect(off.conninfo(), autocommit=True) as conn:
        assert len(conn.execute(sql).fetchall()) == 7
    sid, event = statement(off, sql)
    assert "preview" not in event and event["rows"] == 7
    shown = off.run_cli("replay", sid, "--no-wait")
    assert shown.returncode == 0, shown.stderr
    assert "-+-" not in shown.stdout and "**** **** **** 1111" not in shown.stdout


# -- rendering (pure) -------------------------------------------------------------------------------------
def test_render_preview_table_escapes_and_aligns() -> None:
    data: dict[str, Any] = {
        "kind": "query",
        "sql": "SELECT a, b FROM t",
        "tags": ["SELECT 3"],
        "rows": 3,
        "status": "ok",
        "error": None,
        "duration_ms": 1.0,
        "preview": {"columns": ["a", "b\x1b[2J"], "rows": [["x\x1b]0;t\x07\ty", None], ["日本", "\u202e!"]]},
    }
    lines = render(Entry(0.0, "statement", data), Painter(enabled=False))
    assert lines[2:] == [
        "           a                | b\\x1b[2J",
        "           -----------------+---------",
        "           x\\x1b]0;t\\x07\\ty | NULL",
        "           日本             | \\u202e!",  # wide characters take two columns
        "           (1 more row not recorded)",
    ]
    coloured = "\n".join(render(Entry(0.0, "statement", data), Painter(enabled=True)))
    assert "\x1b[2mNULL\x1b[0m" in coloured and "\x1b[2J" not in coloured and "\u202e" not in coloured
    # no header when the shape was not seen; not a dict: shown as it is; none: nothing
    data["preview"] = {"columns": [], "rows": [["1"]]}
    data["rows"] = 1
    assert render(Entry(0.0, "statement", data), Painter(enabled=False))[2:] == ["           1"]
    data["preview"] = "odd"
    assert render(Entry(0.0, "statement", data), Painter(enabled=False))[2:] == ["           preview: odd"]
    del data["preview"]
    assert len(render(Entry(0.0, "statement", data), Painter(enabled=False))) == 2
