"""Structured logs: JSON lines, and secrets never reach them."""

from __future__ import annotations

import io
import logging

import orjson

from hoopgw import log

JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def capture() -> io.StringIO:
    stream = io.StringIO()
    log.setup_logging("debug", json=True, stream=stream)
    return stream


def test_json_lines_and_redaction() -> None:
    stream = capture()
    try:
        log.info("login", user="alice", password="hunter2", api_key="k1", note=f"bearer {JWT} end")
        log.get_logger("hoopgw.x").warning("upstream", headers={"Authorization": "Basic abc"}, values=[JWT])
        logging.getLogger("other").error("token %s seen", JWT, extra={"client_secret": "s3"})
        try:
            raise ValueError(f"bad {JWT}")
        except ValueError:
            log.exception("boom", access_token="t0k")
    finally:
        logging.getLogger().handlers.clear()
    out = stream.getvalue()
    for secret in ("hunter2", "k1", "Basic abc", JWT, "s3", "t0k", "c2lnbmF0dXJl"):
        assert secret not in out
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [r["event"] for r in records] == ["login", "upstream", "token [redacted] seen", "boom"]
    first = records[0]
    assert first["level"] == "info" and first["user"] == "alice" and first["password"] == "[redacted]"
    assert first["note"] == "bearer [redacted] end"
    assert records[1]["headers"] == {"Authorization": "[redacted]"}
    assert records[2]["client_secret"] == "[redacted]"
    assert "ValueError" in records[3]["exception"]


def test_levels_filter() -> None:
    stream = io.StringIO()
    log.setup_logging("warning", stream=stream)
    try:
        log.info("hidden")
        log.error("shown", n=1)
    finally:
        logging.getLogger().handlers.clear()
    assert [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["shown"]
