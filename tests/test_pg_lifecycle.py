"""Operations: health endpoint, graceful SIGTERM, idle and login timeouts."""

from __future__ import annotations

import json
import signal
import socket
import time
from typing import Any

import psycopg
import pytest

from hoopgw.demo import http_get

from ._support.gateway import Gateway
from ._support.procs import tcp_accepts, wait_until

GatewayFactory = Any


def test_health_endpoint_reports_live_sessions(gateway: Gateway) -> None:
    def health_now() -> dict[str, object]:
        status, body = http_get("127.0.0.1", gateway.api_port, "/healthz")
        assert status == 200
        result: dict[str, object] = json.loads(body)
        return result

    # the start-up probes of the listen port (plain TCP connects) may still be open for a moment
    wait_until(lambda: health_now()["sessions"] == 0, timeout=5, what="start-up probes closed")
    health = health_now()
    assert health["status"] == "ok" and health["sessions"] == 0 and health["connections"] == ["bankdb"]
    with psycopg.connect(gateway.conninfo()) as conn:
        conn.execute("SELECT 1")
        assert json.loads(http_get("127.0.0.1", gateway.api_port, "/healthz")[1])["sessions"] == 1


def test_sigterm_lets_a_transaction_finish_then_closes(gateway_factory: GatewayFactory) -> None:
    gw: Gateway = gateway_factory(gateway={"shutdown_timeout": 20})
    idle = psycopg.connect(gw.conninfo(), autocommit=True)
    busy = psycopg.connect(gw.conninfo(), autocommit=True)
    try:
        busy.execute("BEGIN")
        busy.execute("CREATE TEMP TABLE during(x int)")
        assert gw.process.proc is not None
        gw.process.proc.send_signal(signal.SIGTERM)
        # New clients are turned away at once ...
        wait_until(lambda: not tcp_accepts("127.0.0.1", gw.port()), timeout=5, what="listener closed")
        # ... the idle session is closed with 57P01 ...
        with pytest.raises(psycopg.OperationalError, match="gateway is shutting down"):
            idle.execute("SELECT 1")
        # ... while the open transaction may finish its work.
        busy.execute("INSERT INTO during VALUES (1)")
        assert busy.execute("SELECT count(*) FROM during").fetchone() == (1,)
        busy.execute("COMMIT")
        assert gw.process.proc.wait(15) == 0
    finally:
        idle.close()
        busy.close()
    assert "shutting down" in gw.log_text()


def test_sigterm_timeout_ends_stuck_sessions(gateway_factory: GatewayFactory) -> None:
    gw: Gateway = gateway_factory(gateway={"shutdown_timeout": 1})
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        conn.execute("BEGIN")
        assert gw.process.proc is not None
        started = time.monotonic()
        gw.process.proc.send_signal(signal.SIGTERM)
        assert gw.process.proc.wait(15) == 0
        assert time.monotonic() - started < 10
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")


def test_idle_timeout_closes_quiet_sessions(gateway_factory: GatewayFactory) -> None:
    gw: Gateway = gateway_factory(gateway={"idle_timeout": 1})
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        time.sleep(2.5)
        with pytest.raises(psycopg.OperationalError, match="idle timeout"):
            conn.execute("SELECT 1")
    # A session kept busy is not closed.
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        for _ in range(6):
            conn.execute("SELECT pg_sleep(0.4)")


def test_login_timeout_drops_silent_clients(gateway_factory: GatewayFactory) -> None:
    gw: Gateway = gateway_factory(gateway={"login_timeout": 1})
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=10) as sock:
        started = time.monotonic()
        data = sock.recv(1024)  # the gateway answers with an error and closes, no startup sent
        assert time.monotonic() - started < 8
    assert data[:1] == b"E" and b"login timeout" in data
    res = gw.psql("SELECT 1;")
    assert res.stdout.strip() == "1"
