"""Client authentication, startup rules and brokered upstream credentials, with real psql and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.identity import LocalIssuer

from ._support.gateway import Gateway, PgConn
from ._support.pg import TestPg
from ._support.procs import free_port

GatewayFactory = Any


def _signed(data_dir: Path, **overrides: Any) -> str:
    """A token signed with the gateway's own issuer key, with claims overridden (to make bad ones)."""
    issuer = LocalIssuer(data_dir, "hoopgw")
    kid = issuer.kid
    key = serialization.load_pem_private_key((data_dir / "issuer_ed25519.pem").read_bytes(), None)
    now = int(time.time())
    claims = {
        "iss": "hoopgw-local",
        "aud": "hoopgw",
        "sub": "mallory",
        "groups": ["dev"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "t1",
    }
    claims.update(overrides)
    assert isinstance(key, Ed25519PrivateKey)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def _sessions(gw: Gateway) -> list[dict[str, Any]]:
    res = gw.run_cli("sessions", "list", "--json")
    assert res.returncode == 0, res.stderr
    data: list[dict[str, Any]] = json.loads(res.stdout)
    return data


def test_good_token_opens_a_session(module_gateway: Gateway) -> None:
    res = module_gateway.psql("SELECT current_user, current_database();", user="whoever")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "app|bank"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("garbage", "not recognised"),
        ("expired", "expired"),
        ("not_yet_valid", "not yet valid"),
        ("other_audience", "audience"),
        ("other_issuer", "not issued by"),
        ("tampered", "signature"),
        ("alg_none", ""),
        ("other_gateway", ""),
        ("empty", ""),
    ],
)
def test_bad_credentials_are_refused_with_28P01(
    module_gateway: Gateway, tmp_path: Path, case: str, reason: str
) -> None:
    gw = module_gateway
    now = int(time.time())
    good = gw.token("mallory")
    tokens = {
        "garbage": "not-a-token",
        "expired": _signed(gw.data_dir, exp=now - 300, nbf=now - 900, iat=now - 900),
        "not_yet_valid": _signed(gw.data_dir, nbf=now + 300),
        "other_audience": _signed(gw.data_dir, aud="someone-else"),
        "other_issuer": _signed(gw.data_dir, iss="https://evil.example"),
        "tampered": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        "alg_none": jwt.encode(
            {"sub": "mallory", "aud": "hoopgw", "iss": "hoopgw-local"},
            None,  # type: ignore[arg-type]  # alg=none signs with no key; PyJWT's annotation wants one
            algorithm="none",
        ),
        "other_gateway": LocalIssuer(tmp_path / "other", "hoopgw").issue("mallory", ["dev"], 600),
        "empty": "",
    }
    before = {s["id"] for s in _sessions(gw)}
    res = gw.psql("SELECT 1;", user="mallory", password=tokens[case] or "x")
    assert res.returncode != 0
    assert 'password authentication failed for user "mallory"' in res.stderr
    if reason:
        assert reason in res.stderr.lower()
    # Nothing was forwarded: no session was opened, and the token is not echoed anywhere.
    assert {s["id"] for s in _sessions(gw)} == before
    if tokens[case]:
        assert tokens[case] not in gw.log_text()


def test_password_over_cleartext_is_refused(module_gateway: Gateway) -> None:
    res = module_gateway.psql("SELECT 1;", sslmode="disable")
    assert res.returncode != 0
    assert "hoopgw accepts credentials only over TLS" in res.stderr
    assert "sslmode=require" in res.stderr


def test_startup_rules(module_gateway: Gateway) -> None:
    gw = module_gateway
    res = gw.psql("SELECT 1;", dbname="postgres")
    assert 'database "postgres" is not available through connection "bankdb"' in res.stderr
    res = gw.psql("SELECT 1;", options="-c role=postgres")
    assert 'setting "role" cannot be chosen' in res.stderr
    res = gw.psql("SELECT 1;", replication="database")
    assert "replication connections are not allowed" in res.stderr
    # Ordinary settings reach the upstream session.
    res = gw.psql(
        "SHOW search_path; SHOW statement_timeout; SELECT current_setting('application_name');",
        options="-c search_path=pg_catalog -c statement_timeout=7s",
        application_name="my-app",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["pg_catalog", "7s", "my-app"]


@pytest.mark.parametrize(
    ("conn", "expect_user"),
    [
        (PgConn("md5db", role="md5user", sslmode="disable"), "md5user"),
        (PgConn("trustdb", role="trustuser", sslmode="disable"), "trustuser"),
        (PgConn("scramtls", role="app", sslmode="require"), "app"),
        (PgConn("sslonly", role="ssluser", sslmode="require"), "ssluser"),
    ],
    ids=lambda v: v.name if isinstance(v, PgConn) else v,
)
def test_upstream_auth_methods_and_tls(
    gateway_factory: GatewayFactory, conn: PgConn, expect_user: str
) -> None:
    gw: Gateway = gateway_factory([conn])
    res = gw.psql("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();", conn=conn.name)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    user, ssl = res.stdout.strip().split("|")
    assert user == expect_user
    assert ssl == ("t" if conn.sslmode == "require" else "f")


def test_upstream_verify_full_with_root_cert(gateway_factory: GatewayFactory, pg: TestPg) -> None:
    cert = pg.cluster.data_dir / "server.crt"
    assert cert.exists()
    conn = PgConn("verified", role="app", sslmode="verify-full")
    gw: Gateway = gateway_factory([conn], start=False)
    entry = gw.doc["connections"][0]
    entry["upstream"] = entry["upstream"].replace(
        "sslmode=verify-full", f"sslmode=verify-full&sslrootcert={cert}"
    )
    from hoopgw.demo import toml_dumps

    gw.config_path.write_text(toml_dumps(gw.doc))
    gw.start()
    res = gw.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();", conn="verified")
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout.strip() == "t"


def test_upstream_refusals_are_reported_clearly(gateway_factory: GatewayFactory, pg: TestPg) -> None:
    # hostssl-only role without TLS to the upstream: PostgreSQL refuses, the client learns why.
    gw: Gateway = gateway_factory(
        [
            PgConn("plain", role="ssluser", sslmode="disable"),
            PgConn("badpw", role="app", options={"password": "env:WRONG_PW"}),
        ],
        env={"WRONG_PW": "definitely-not-it"},
    )
    res = gw.psql("SELECT 1;", conn="plain")
    assert res.returncode != 0
    assert "upstream 'plain' refused the session" in res.stderr
    res = gw.psql("SELECT 1;", conn="badpw")
    assert res.returncode != 0
    assert "upstream 'badpw' refused the session" in res.stderr
    assert "definitely-not-it" not in res.stderr + gw.log_text()


def test_dead_upstream_gives_08001_and_gateway_keeps_serving(gateway_factory: GatewayFactory) -> None:
    dead = free_port()
    gw: Gateway = gateway_factory(
        [PgConn("bankdb"), PgConn("dead", options={"upstream": f"postgresql://app@127.0.0.1:{dead}/bank"})]
    )
    res = gw.psql("SELECT 1;", conn="dead")
    assert res.returncode != 0
    assert "cannot reach upstream 'dead'" in res.stderr
    assert f"127.0.0.1:{dead}" in res.stderr
    res = gw.psql("SELECT 2;")
    assert res.stdout.strip() == "2", res.stderr
