"""Passwords inside SQL never reach the audit trail: unit cases, and a real ALTER ROLE through the gateway."""

from __future__ import annotations

import psycopg
import pytest

from hoopgw.audit._secrets import redact_params, redact_sql, secret_params

from ._support.gateway import Gateway
from ._support.pg import TestPg


@pytest.mark.parametrize(
    ("sql", "redacted"),
    [
        ("CREATE ROLE a LOGIN PASSWORD 'Hunter2'", "CREATE ROLE a LOGIN PASSWORD '***'"),
        ("alter user a with encrypted password E'x\\'y'", "alter user a with encrypted password '***'"),
        ("ALTER ROLE a PASSWORD $$p'w$$", "ALTER ROLE a PASSWORD '***'"),
        ("ALTER ROLE a PASSWORD $q$p$w$q$ VALID UNTIL 'infinity'",
         "ALTER ROLE a PASSWORD '***' VALID UNTIL 'infinity'"),
        ("CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password 'pw1')",
         "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'u', password '***')"),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=h password=sekret dbname=d' PUBLICATION p",
         "CREATE SUBSCRIPTION s CONNECTION 'host=h password=*** dbname=d' PUBLICATION p"),
        ("SELECT dblink_connect('host=h password=''x y'' dbname=d')",
         "SELECT dblink_connect('host=h password=*** dbname=d')"),
        ("ALTER ROLE a PASSWORD $1", "ALTER ROLE a PASSWORD $1"),  # the parameter is redacted instead
        ("ALTER ROLE a PASSWORD NULL", "ALTER ROLE a PASSWORD NULL"),
        ("SELECT 'no secret here'", "SELECT 'no secret here'"),
    ],
)  # fmt: skip
def test_redact_sql(sql: str, redacted: str) -> None:
    assert redact_sql(sql) == redacted


def test_parameters_used_as_passwords() -> None:
    assert secret_params("ALTER ROLE a PASSWORD $2") == {1}
    assert redact_params("ALTER ROLE a PASSWORD $2", ["a", "secret", None]) == ["a", "***", None]
    assert redact_params("SELECT $1", ["kept"]) == ["kept"]
    assert redact_params("ALTER ROLE a PASSWORD $1", None) is None


def test_a_password_change_through_the_gateway_is_recorded_without_it(gateway: Gateway, pg: TestPg) -> None:
    password = pg.password("app")
    assert password is not None
    with psycopg.connect(gateway.conninfo(), autocommit=True) as conn:
        # the upstream role sets its own password to what it already is: the statement runs as sent
        conn.execute(f"ALTER ROLE CURRENT_USER PASSWORD '{password}'")
        # a password in a connection string, refused by the server: recorded without it all the same
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute(f"SELECT dblink_connect('host=127.0.0.1 password={password}')")
    assert gateway.stop() == 0
    with psycopg.connect(pg.dsn("app"), autocommit=True) as direct:  # the password still works
        assert direct.execute("SELECT 1").fetchone() == (1,)
    stored = b"".join(p.read_bytes() for p in gateway.data_dir.glob("audit.db*"))
    assert b"ALTER ROLE CURRENT_USER PASSWORD '***'" in stored
    assert password.encode() not in stored
    assert password not in gateway.log_text()
