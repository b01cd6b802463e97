"""Masking end to end: real PostgreSQL, the real gateway, psql / psycopg / asyncpg as clients.

The raw values below are in the database; through the gateway none of them may reach the client,
the audit store or the logs. Expected masked forms are written out by hand from docs/MASKING.md.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerrors

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import run

Conn = psycopg.Connection[tuple[Any, ...]]

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
CARD2 = "5555555555554444"
SSN = "123-45-6789"
IBAN = "DE89370400440532013000"
EMAIL = "carol.danvers@example.com"
ACCOUNT = "ACC-0042-7781"
PAN_NUMBER = 4012888888881881  # Luhn-valid, stored in a bigint column
NAME = "Carol Danvers"

#: Every raw value that must never leave the gateway unmasked.
RAW = [CARD, CARD_DIGITS, CARD2, SSN, IBAN, EMAIL, ACCOUNT, str(PAN_NUMBER)]

MASKING = {
    "masking": [
        {
            "connections": ["bankdb"],
            "detectors": ["credit_card", "us_ssn", "iban", "email"],
            "columns": ["*.account_number"],
            "style": "last4",
        },
        {"connections": ["bankdb"], "columns": ["mask_customers.full_name"], "column_style": "hash"},
        {"connections": ["bankdb"], "columns": ["mask_customers.secret_note"], "column_style": "null"},
    ]
}


@pytest.fixture(scope="module")
def owner(pg: TestPg) -> Iterator[Conn]:
    """The upstream role, straight to the bank database: creates the test tables."""
    with psycopg.connect(pg.dsn("app"), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def data(owner: Conn) -> Iterator[None]:
    admin = owner
    admin.execute("DROP TABLE IF EXISTS mask_customers, mask_unique")
    admin.execute(
        """
        CREATE TABLE mask_customers (
            id int PRIMARY KEY, full_name text, card text, ssn text, iban text, email text,
            account_number text, pan_number bigint, doc jsonb, secret_note varchar(40),
            balance numeric(12, 2)
        )
        """
    )
    rows = [
        (
            1,
            NAME,
            CARD,
            SSN,
            IBAN,
            EMAIL,
            ACCOUNT,
            PAN_NUMBER,
            json.dumps({"pan": CARD2, "n": 1}),
            "vip",
            10.5,
        ),
        (2, NAME, "order 1234567890123", "no ssn", "none", "n/a", "ACC-0000-0001", 42, '{"n": 1}', "x", 99),
        (3, "Bob", None, None, None, None, None, None, json.dumps({"pan": int(CARD2)}), None, 0),
    ]
    with admin.cursor() as cur:
        cur.executemany("INSERT INTO mask_customers VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
    admin.execute("CREATE TABLE mask_unique (card text UNIQUE)")
    admin.execute("GRANT ALL ON mask_customers, mask_unique TO PUBLIC")
    yield
    admin.execute("DROP TABLE IF EXISTS mask_customers, mask_unique")


@pytest.fixture(scope="module")
def gw(module_gateway_factory: Any, data: None) -> Gateway:
    gateway: Gateway = module_gateway_factory(extra=MASKING)
    return gateway


def connect(gw: Gateway, **kw: Any) -> Conn:
    return psycopg.connect(gw.conninfo(**kw), autocommit=True)


def assert_no_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"raw value {raw!r} leaked: {text[:2000]}"


def test_psql_results_are_masked_by_detectors_and_column_rules(gw: Gateway) -> None:
    res = gw.psql(
        "SELECT id, card, ssn, iban, email, account_number, pan_number, balance"
        " FROM mask_customers ORDER BY id"
    )
    assert res.returncode == 0, res.stderr
    assert_no_raw(res.stdout)
    lines = res.stdout.splitlines()
    assert lines[0] == (
        "1|**** **** **** 1111|***-**-6789|******************3000|*****.*******@******e.com"
        "|***-****-7781||10.50"
    ), "card/ssn/iban/email by last4; account_number by column rule; a card in a bigint becomes NULL"
    # nothing to mask: an id that fails Luhn, plain words, an ordinary bigint
    assert lines[1] == "2|order 1234567890123|no ssn|none|n/a|***-****-0001|42|99.00"


def test_column_rule_styles_hash_and_null(gw: Gateway) -> None:
    with connect(gw) as conn:
        rows = conn.execute("SELECT id, full_name, secret_note FROM mask_customers ORDER BY id").fetchall()
    (_, a, note_a), (_, b, _), (_, c, note_c) = rows
    assert a == b, "equal inputs give equal tokens"
    assert a != c
    assert a.startswith("tok_") and len(a) == 20 and NAME not in a
    assert note_a is None and note_c is None


def test_jsonb_values_stay_parseable(gw: Gateway) -> None:
    with connect(gw) as conn:
        docs = [r[0] for r in conn.execute("SELECT doc FROM mask_customers ORDER BY id")]
    assert docs[0] == {"pan": "************4444", "n": 1}, "inside a JSON string: masked in place"
    assert docs[1] == {"n": 1}
    assert docs[2] is None, "a card as a JSON number cannot be masked in place: NULL"


def test_label_fallback_for_computed_columns(gw: Gateway) -> None:
    with connect(gw) as conn:
        (value,) = conn.execute(
            "SELECT account_number || '' AS account_number FROM mask_customers WHERE id = 1"
        ).fetchone() or (None,)
    assert value == "***-****-7781"


def test_psycopg_binary_and_prepared_results(gw: Gateway) -> None:
    with connect(gw) as conn:
        for _ in range(3):  # prepared after a few executions: rows of a named statement
            row = conn.execute(
                "SELECT card, email, account_number FROM mask_customers WHERE id = %s", (1,), prepare=True
            ).fetchone()
            assert row == ("**** **** **** 1111", "*****.*******@******e.com", "***-****-7781")
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT card, iban, pan_number FROM mask_customers WHERE id = %s", (1,))
            assert cur.fetchone() == ("**** **** **** 1111", "******************3000", PAN_NUMBER), (
                "binary text values are masked; a binary bigint is not text and passes"
            )
            cur.execute("SELECT xmlelement(name c, card)::xml FROM mask_customers WHERE id = 1")
            assert cur.fetchone() == (b"<c>**** **** **** 1111</c>",), "xml is text in binary format too"


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_asyncpg_prepared_statement_rows_are_masked(gw: Gateway) -> None:
    token = gw.token("dave", ["ops"])

    async def go() -> list[Any]:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=gw.port(),
            user="dave",
            password=token,
            database="bank",
            ssl=_tls(),
            timeout=10,
        )
        try:
            stmt = await conn.prepare("SELECT card, ssn, account_number FROM mask_customers WHERE id = $1")
            first = await stmt.fetchrow(1)
            again = await stmt.fetchrow(1)
            cursor_rows = []
            async with conn.transaction():
                async for r in stmt.cursor(1, prefetch=1):
                    cursor_rows.append(tuple(r))
            await conn.fetchval("SELECT length($1::text)", CARD_DIGITS)  # a binary parameter
            return [tuple(first or ()), tuple(again or ()), cursor_rows]
        finally:
            await conn.close()

    first, again, cursor_rows = asyncio.run(go())
    expected = ("**** **** **** 1111", "***-**-6789", "***-****-7781")
    assert first == expected and again == expected
    assert cursor_rows == [expected]
    # the binary parameter is recorded masked (not as the hex of the card)
    listed = json.loads(gw.run_cli("sessions", "list", "--json", "--limit", "200").stdout)
    mine = [x for x in listed if x["subject"] == "dave"]
    shown = gw.run_cli("sessions", "show", mine[0]["id"], "--json").stdout
    assert CARD_DIGITS.encode().hex() not in shown and "length($1::text)" in shown


def test_copy_to_stdout_text_and_csv(gw: Gateway, tmp_path: Path) -> None:
    with connect(gw) as conn, conn.cursor() as cur:
        buf = io.BytesIO()
        with cur.copy(
            "COPY (SELECT id, card, account_number FROM mask_customers ORDER BY id) TO STDOUT"
        ) as cp:
            for chunk in cp:
                buf.write(chunk)
        text = buf.getvalue().decode()
        assert_no_raw(text)
        assert text.splitlines()[0] == "1\t**** **** **** 1111\t***-****-7781"
        buf = io.BytesIO()
        with cur.copy(
            "COPY mask_customers (id, email, account_number) TO STDOUT WITH (FORMAT csv, HEADER)"
        ) as cp:
            for chunk in cp:
                buf.write(chunk)
        lines = buf.getvalue().decode().splitlines()
        assert lines[0] == "id,email,account_number"
        assert lines[1] == '1,"*****.*******@******e.com","***-****-7781"'
        assert_no_raw("\n".join(lines))
        buf = io.BytesIO()
        with cur.copy("COPY mask_customers (id, account_number) TO STDOUT WITH (FORMAT binary)") as cp:
            for chunk in cp:
                buf.write(chunk)
        assert ACCOUNT.encode() not in buf.getvalue() and b"***-****-7781" in buf.getvalue()
    out = tmp_path / "out.txt"
    res = gw.psql(f"\\copy (SELECT card, ssn FROM mask_customers WHERE id = 1) TO '{out}'")
    assert res.returncode == 0, res.stderr
    assert out.read_text() == "**** **** **** 1111\t***-**-6789\n"


def test_errors_and_notices_are_masked(gw: Gateway) -> None:
    notices: list[str] = []
    with connect(gw) as conn:
        conn.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
        conn.execute(f"DO $$ BEGIN RAISE NOTICE 'card on file: {CARD_DIGITS}'; END $$")
        conn.execute("INSERT INTO mask_unique VALUES (%s) ON CONFLICT DO NOTHING", (CARD_DIGITS,))
        with pytest.raises(pgerrors.UniqueViolation) as err:
            conn.execute("INSERT INTO mask_unique VALUES (%s)", (CARD_DIGITS,))
    assert notices == ["card on file: ************1111"]
    with connect(gw) as conn:
        conn.execute("LISTEN cards")
        conn.execute(f"NOTIFY cards, 'new card {CARD}'")
        got = [n.payload for n in conn.notifies(timeout=5, stop_after=1)]
    assert got == ["new card **** **** **** 1111"]
    detail = err.value.diag.message_detail or ""
    assert "************1111" in detail and CARD_DIGITS not in detail


def test_audit_records_are_masked_and_counted(gw: Gateway) -> None:
    app = "mask-audit"
    with connect(gw, application_name=app) as conn:
        conn.execute(f"SELECT '{CARD}' AS literal, %s::text AS param", (EMAIL,)).fetchall()
        conn.execute("SELECT card, email FROM mask_customers WHERE id = 1").fetchall()
    res = gw.run_cli("sessions", "list", "--json", "--limit", "200")
    sessions = [s for s in json.loads(res.stdout) if s["params"].get("application_name") == app]
    assert len(sessions) == 1
    shown = gw.run_cli("sessions", "show", sessions[0]["id"], "--json")
    assert_no_raw(shown.stdout)
    [doc] = json.loads(shown.stdout)
    assert "**** **** **** 1111" in shown.stdout
    masked = doc["masked"]
    assert masked.get("credit_card", 0) >= 2 and masked.get("email", 0) >= 2, masked


def test_canary_nothing_raw_in_data_dir_or_logs(gw: Gateway) -> None:
    """Sessions return and send known raw values; afterwards no file of data_dir nor the log holds one."""
    with connect(gw, application_name="canary") as conn:
        conn.execute("SELECT * FROM mask_customers").fetchall()
        conn.execute(f"SELECT '{CARD}', '{SSN}', '{IBAN}', '{EMAIL}'").fetchall()
        conn.execute("SELECT account_number || '' AS account_number FROM mask_customers").fetchall()
        conn.execute("SELECT %s::text, %s::text, %s::bigint", (CARD_DIGITS, SSN, PAN_NUMBER)).fetchall()
        with pytest.raises(pgerrors.UniqueViolation):
            conn.execute("INSERT INTO mask_unique VALUES (%s)", (CARD_DIGITS,))
        with pytest.raises(pgerrors.UndefinedColumn):
            conn.execute(f"SELECT {CARD_DIGITS} FROM mask_customers WHERE nosuch = '{EMAIL}'")
    res = gw.psql(f"SELECT '{CARD2}' AS a, '{IBAN}' AS b; SELECT * FROM mask_customers")
    assert res.returncode == 0, res.stderr
    assert_no_raw(res.stdout)
    gw.stop()
    try:
        needles = [r.encode() for r in RAW if r != ACCOUNT] + [ACCOUNT.encode()]
        blobs = {p: p.read_bytes() for p in gw.data_dir.rglob("*") if p.is_file()}
        blobs[gw.log_path] = gw.log_path.read_bytes()
        assert any(p.name == "audit.db" for p in blobs), list(blobs)
        for path, blob in blobs.items():
            for needle in needles:
                assert needle not in blob, f"{needle!r} found in {path}"
        # the masked forms are there: the canary would have seen the values had they been recorded raw
        audit = b"".join(b for p, b in blobs.items() if p.name.startswith("audit.db"))
        assert b"**** **** **** 1111" in audit or b"****-1111" in audit or b"************1111" in audit
    finally:
        gw.start()


def test_hoopgw_check_rejects_bad_patterns(gw: Gateway, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = gw.config_path.read_text() + '\n[[masking]]\nconnections = ["bankdb"]\npatterns = ["EMP-[0-9"]\n'
    bad.write_text(text)
    res = run([*gw.cli("check")[:-2], "-c", str(bad)], timeout=60)
    assert res.returncode != 0
    assert "masking[3].patterns[0]" in res.stdout + res.stderr


def test_copy_with_custom_csv_options_and_null_rule(gw: Gateway) -> None:
    with connect(gw) as conn, conn.cursor() as cur:
        buf = io.BytesIO()
        sql = (
            "COPY (SELECT id, secret_note, card FROM mask_customers ORDER BY id) TO STDOUT "
            "WITH (FORMAT csv, DELIMITER ';', NULL 'NULL', QUOTE '|', FORCE_QUOTE *)"
        )
        with cur.copy(sql) as cp:
            for chunk in cp:
                buf.write(chunk)
    lines = buf.getvalue().decode().splitlines()
    assert lines == ["|1|;NULL;|**** **** **** 1111|", "|2|;NULL;|order 1234567890123|", "|3|;NULL;NULL"]
    with connect(gw) as conn, conn.cursor() as cur:
        buf = io.BytesIO()
        sql = (
            "COPY (SELECT 'a|b' AS n, account_number FROM mask_customers WHERE id = 1)"
            " TO STDOUT (DELIMITER '|')"
        )
        with cur.copy(sql) as cp:
            for chunk in cp:
                buf.write(chunk)
    assert buf.getvalue().decode() == "a\\|b|***-****-7781\n", "an escaped delimiter is data"


def test_failed_catalog_lookup_ends_the_session_instead_of_leaking(
    module_gateway_factory: Any, admin: Conn, data: None
) -> None:
    """The upstream role may hold one connection: the side connection cannot open, nothing leaks."""
    from ._support.gateway import PgConn

    gw = module_gateway_factory(
        [PgConn("limited", role="trustuser")],
        extra={"masking": [{"connections": ["limited"], "columns": ["*.account_number"]}]},
    )
    admin.execute("ALTER ROLE trustuser CONNECTION LIMIT 1")
    try:
        with connect(gw, conn="limited") as conn, pytest.raises(psycopg.errors.InternalError) as err:
            conn.execute("SELECT account_number FROM mask_customers").fetchall()
        assert "cannot mask" in str(err.value)
        assert ACCOUNT not in str(err.value)
        with connect(gw, conn="limited") as conn:  # the gateway still serves
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        admin.execute("ALTER ROLE trustuser CONNECTION LIMIT -1")


def test_column_rules_follow_schema_changes_and_temp_tables(gw: Gateway, owner: Conn) -> None:
    owner.execute("DROP TABLE IF EXISTS mask_evolving")
    owner.execute("CREATE TABLE mask_evolving (id int)")
    owner.execute("INSERT INTO mask_evolving VALUES (1)")
    owner.execute("GRANT ALL ON mask_evolving TO PUBLIC")
    try:
        with connect(gw) as conn:
            assert conn.execute("SELECT * FROM mask_evolving").fetchall() == [(1,)]
            owner.execute(f"ALTER TABLE mask_evolving ADD COLUMN account_number text DEFAULT '{ACCOUNT}'")
            assert conn.execute("SELECT * FROM mask_evolving").fetchall() == [(1, "***-****-7781")]
            # a temp table is invisible to the gateway's side connection: the column label decides
            conn.execute(
                "CREATE TEMP TABLE mask_tmp AS SELECT account_number FROM mask_customers WHERE id = 1"
            )
            assert conn.execute("SELECT * FROM mask_tmp").fetchall() == [("***-****-7781",)]
    finally:
        owner.execute("DROP TABLE IF EXISTS mask_evolving")
