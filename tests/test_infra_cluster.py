"""The test PostgreSQL itself: every upstream auth method the gateway brokers works directly."""

from __future__ import annotations

import psycopg
import pytest

from hoopgw._pgcluster import TempCluster, conninfo

from ._support.pg import TestPg
from ._support.procs import require_binary, run

WHO = "SELECT current_user || '|' || (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())"


def psql_direct(dsn: str, sql: str = WHO) -> tuple[int, str, str]:
    res = run([require_binary("psql"), "-X", "-A", "-t", "-c", sql, dsn], timeout=30)
    return res.returncode, res.stdout.strip(), res.stderr.strip()


@pytest.mark.parametrize("role", ["app", "md5user", "trustuser"])
@pytest.mark.parametrize("sslmode", ["disable", "require"])
def test_psql_logs_in_with_each_method(pg: TestPg, role: str, sslmode: str) -> None:
    code, out, err = psql_direct(pg.dsn(role, sslmode=sslmode))
    assert code == 0, err
    assert out == f"{role}|{'true' if sslmode == 'require' else 'false'}"


@pytest.mark.parametrize("role", ["app", "md5user", "trustuser", "ssluser"])
def test_psycopg_logs_in_over_tls(pg: TestPg, role: str) -> None:
    with psycopg.connect(pg.dsn(role, sslmode="require"), connect_timeout=10) as conn:
        row = conn.execute(WHO).fetchone()
    assert row == (f"{role}|true",)


def test_stored_password_hashes_match_the_method(pg: TestPg) -> None:
    out = pg.psql("SELECT rolname, split_part(rolpassword, '$', 1) FROM pg_authid "
                  "WHERE rolname IN ('app', 'ssluser') ORDER BY 1")  # fmt: skip
    assert out.splitlines() == ["app|SCRAM-SHA-256", "ssluser|SCRAM-SHA-256"]
    md5 = pg.psql("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'md5user'")
    assert md5 == "md5"


def test_ssl_only_role_is_refused_without_tls(pg: TestPg) -> None:
    code, _, err = psql_direct(pg.dsn("ssluser", sslmode="disable"))
    assert code != 0
    assert "pg_hba.conf rejects connection" in err
    code, out, err = psql_direct(pg.dsn("ssluser", sslmode="require"))
    assert (code, out) == (0, "ssluser|true"), err


@pytest.mark.parametrize("role", ["app", "md5user", "ssluser"])
def test_wrong_password_fails(pg: TestPg, role: str) -> None:
    dsn = pg.dsn(role, sslmode="require", password="not-the-password")
    code, _, err = psql_direct(dsn)
    assert code != 0
    assert "password authentication failed" in err
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=10).close()


def test_verify_full_against_the_generated_certificate(pg: TestPg) -> None:
    dsn = pg.dsn("app", sslmode="verify-full", sslrootcert=str(pg.cluster.cert_path))
    code, out, err = psql_direct(dsn)
    assert (code, out) == (0, "app|true"), err


def test_app_owns_bank_and_other_roles_can_work_in_it(pg: TestPg) -> None:
    pg.psql("CREATE TABLE IF NOT EXISTS infra_probe (id int)", user="app")
    assert pg.psql("SELECT datdba::regrole FROM pg_database WHERE datname = 'bank'") == "app"
    for role in ("md5user", "trustuser", "ssluser"):
        code, out, err = psql_direct(pg.dsn(role, sslmode="require"), "SELECT count(*) FROM infra_probe")
        assert (code, out) == (0, "0"), err


def test_kill_backends_terminates_sessions(pg: TestPg) -> None:
    with psycopg.connect(pg.dsn("app"), connect_timeout=10, application_name="victim") as conn:
        pid = conn.info.backend_pid
        assert any(b[0] == pid and b[3] == "victim" for b in pg.cluster.backends(db="bank"))
        assert pg.cluster.kill_backends(user="app") >= 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")


def test_a_private_cluster_starts_stops_and_cleans_up() -> None:
    cluster = TempCluster()
    with cluster:
        assert cluster.running
        assert cluster.psql("SHOW listen_addresses") == "127.0.0.1"
        assert cluster.psql("SHOW ssl") == "on"
        assert cluster.psql("SHOW password_encryption") == "scram-sha-256"
        assert cluster.psql("SHOW max_connections") == "200"
        pid = cluster.pid
        assert pid is not None
    assert cluster.pid is None
    assert not cluster.base_dir.exists()


def test_conninfo_quotes_values() -> None:
    assert (
        conninfo(host="h", password="a b'c\\", port=5, sslmode=None) == r"host=h password='a b\'c\\' port=5"
    )
