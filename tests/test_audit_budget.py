"""Failed logins are recorded, but no client can fill the audit store with them."""

from __future__ import annotations

import sqlite3
import time

import orjson
import psycopg
import pytest

from hoopgw.audit._limit import EventBudget

from ._support.gateway import Gateway


def test_budget_per_source_and_window() -> None:
    budget = EventBudget(per_window=3, window=60.0, max_sources=2)
    assert [budget.admit("a", now=0.0) for _ in range(3)] == [0, 0, 0]
    assert [budget.admit("a", now=1.0) for _ in range(4)] == [None] * 4
    assert budget.admit("b", now=1.0) == 0  # another source has its own budget
    # the next window: recorded again, saying how many were left out
    assert budget.admit("a", now=61.0) == 4
    assert budget.admit("a", now=61.5) == 0
    # bounded memory: a third source evicts the least recently seen one
    budget.admit("c", now=62.0)
    assert budget.admit("b", now=62.0) == 0 and len(budget._sources) == 2


def test_a_login_flood_is_recorded_within_budget(gateway: Gateway) -> None:
    attempts = 30
    for _ in range(attempts):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(gateway.conninfo(password="not-a-token"), connect_timeout=10).close()
    # each refusal is still logged; the audit store keeps at most the budget per client per minute
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(gateway.data_dir / "audit.db") as db:
            rows = db.execute("SELECT data FROM events WHERE kind = 'auth_failed'").fetchall()
        if len(rows) >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(rows) == 20
    assert all(orjson.loads(r[0])["client_addr"].startswith("127.0.0.1:") for r in rows)
    assert gateway.log_text().count("authentication failed") >= attempts
