"""Held statements under attack: an ``ai-agents`` caller speaking the wire protocol directly.

Each test tries to get an ``approve``-class statement run upstream without an approval, or run
differently from what the approver saw, through the REAL gateway against the REAL Postgres; the
outcome is always read back from the upstream table. The "approver" in these tests approves exactly
what a careful human would: the decoy the attacker wants them to see, never anything else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hoopgw.approvals import load_digest_key, statement_digest

from ._support.gateway import Gateway
from ._support.pg import TestPg
from .test_pg_approvals import AGENTS, CARD, DBA, MASKING, SHAPES, decide, events, pending, state

Msg = tuple[bytes, bytes]


# -- a raw PostgreSQL wire client -------------------------------------------------------------------
def _cstr(s: str | bytes) -> bytes:
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def _msg(code: bytes, body: bytes) -> bytes:
    return code + struct.pack("!I", len(body) + 4) + body


def parse(name: str | bytes, sql: str | bytes) -> bytes:
    return _msg(b"P", _cstr(name) + _cstr(sql) + struct.pack("!H", 0))


def bind(statement: str | bytes, *params: str | None, portal: str | bytes = "") -> bytes:
    body = _cstr(portal) + _cstr(statement) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            raw = p.encode()
            body += struct.pack("!i", len(raw)) + raw
    return _msg(b"B", body + struct.pack("!H", 0))


def execute(portal: str | bytes = "", max_rows: int = 0) -> bytes:
    return _msg(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def close(kind: bytes, name: str | bytes) -> bytes:
    return _msg(b"C", kind + _cstr(name))


def query(sql: str | bytes) -> bytes:
    return _msg(b"Q", _cstr(sql))


SYNC = _msg(b"S", b"")
FLUSH = _msg(b"H", b"")
TERMINATE = _msg(b"X", b"")


class Wire:
    """One TLS connection to the gateway: raw frames out, parsed messages in (bounded waits)."""

    def __init__(self, gw: Gateway, user: str, groups: tuple[str, ...], **params: str) -> None:
        raw = socket.create_connection(("127.0.0.1", gw.port()), timeout=10)
        raw.sendall(struct.pack("!II", 8, 80877103))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(raw)
        self.buf = b""
        startup = {"user": user, "database": "bank", **params}
        body = struct.pack("!I", 196608) + b"".join(_cstr(k) + _cstr(v) for k, v in startup.items()) + b"\0"
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        code, payload = self.read()
        assert code == b"R" and payload[:4] == struct.pack("!I", 3), (code, payload)
        self.send(_msg(b"p", _cstr(gw.token(user, groups))))
        self.until_ready()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 15.0) -> Msg:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 5:
                (length,) = struct.unpack("!I", self.buf[1:5])
                if len(self.buf) >= 1 + length:
                    code, body = self.buf[:1], self.buf[5 : 1 + length]
                    self.buf = self.buf[1 + length :]
                    return code, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the gateway")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            self.buf += chunk

    def until_ready(self, timeout: float = 15.0) -> list[Msg]:
        """Every message up to and including the next ReadyForQuery."""
        out: list[Msg] = []
        while True:
            code, body = self.read(timeout)
            out.append((code, body))
            if code == b"Z":
                return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(TERMINATE)
        self.sock.close()


def fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse / NoticeResponse body by code letter."""
    out: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def errors(msgs: list[Msg]) -> list[dict[str, str]]:
    return [fields(b) for c, b in msgs if c == b"E"]


def tags(msgs: list[Msg]) -> list[str]:
    return [b.rstrip(b"\0").decode() for c, b in msgs if c == b"C"]


@pytest.fixture(scope="module")
def gw(module_gateway_factory: Any) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        extra={"policy": [AGENTS, SHAPES, DBA], "masking": [MASKING]},
        gateway={"log_level": "debug"},
    )
    return gateway


@pytest.fixture
def table(gw: Gateway, pg: TestPg) -> Iterator[str]:
    name = f"acct_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {name} (id int PRIMARY KEY, note text, balance int);"
        f"INSERT INTO {name} SELECT g, 'n' || g, 100 FROM generate_series(1, 5) g;",
        user="app",
    )
    yield name
    pg.psql(f"DROP TABLE {name}", user="app")


UNTOUCHED = "1:100,2:100,3:100,4:100,5:100"


def approve_only(gw: Gateway, record: dict[str, Any], shown: str) -> None:
    """A careful approver: approves when the request shows exactly ``shown``, denies anything else."""
    rid = record["id"]
    if record["statement"] == shown:
        assert decide(gw, rid, "dora", ("dba",), "approve").status_code == 200
    else:
        assert decide(gw, rid, "dora", ("dba",), "deny", "not what I expected").status_code == 200


# -- a failed re-Parse of a statement name must not change what the approver is shown -----------------
def test_failed_reparse_of_a_name_does_not_become_the_approvers_text(
    gw: Gateway, pg: TestPg, table: str
) -> None:
    danger = f"UPDATE {table} SET balance = 0 WHERE id > $1::int"
    decoy = f"UPDATE {table} SET note = $1 WHERE id = 1"
    w = Wire(gw, "mallory1", ("ai-agents",))
    try:
        w.send(parse("s", danger) + SYNC)  # Parse only prepares: forwarded
        assert not errors(w.until_ready())
        w.send(parse("s", decoy) + SYNC)  # the server refuses it: "s" already exists
        assert errors(w.until_ready())[0]["C"] == "42P05"
        w.send(bind("s", "0") + execute() + SYNC)
        (record,) = pending(gw, "mallory1")
        approve_only(gw, record, decoy)
        w.until_ready()
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


def test_latin1_names_that_decode_alike_stay_apart(gw: Gateway, pg: TestPg, table: str) -> None:
    danger = f"UPDATE {table} SET balance = 0 WHERE id > $1::int"
    decoy = f"UPDATE {table} SET note = $1 WHERE id = 1"
    w = Wire(gw, "mallory2", ("ai-agents",), client_encoding="LATIN1")
    try:
        # two names the server keeps apart (\xff and \xfe are valid LATIN1), both "s\ufffd" decoded as UTF-8
        w.send(parse(b"s\xff", danger) + parse(b"s\xfe", decoy) + SYNC)
        assert not errors(w.until_ready())
        w.send(bind(b"s\xff", "0") + execute(b"") + SYNC)
        (record,) = pending(gw, "mallory2")
        approve_only(gw, record, decoy)
        w.until_ready()
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


# -- covers = "shape" ---------------------------------------------------------------------------------
def _approve_shape(gw: Gateway, w: Wire, user: str, sql: str, *params: str) -> None:
    """Legitimately get the shape of ``sql`` (a protocol statement) approved for ``user``."""
    w.send(parse("legit", sql) + bind("legit", *params) + execute() + SYNC)
    (record,) = pending(gw, user)
    approve_only(gw, record, sql)
    assert not errors(w.until_ready())


def _no_request_or_denied(gw: Gateway, w: Wire, user: str, shown: str) -> list[Msg]:
    """The answer to what was just sent; a request it opened is decided by a careful approver."""
    found = pending(gw, user, timeout=3)
    if found:
        approve_only(gw, found[0], shown)
    return w.until_ready()


def test_shape_approval_does_not_follow_a_failed_reparse(gw: Gateway, pg: TestPg, table: str) -> None:
    danger = f"UPDATE {table} SET balance = 0 WHERE id > $1::int"
    decoy = f"UPDATE {table} SET note = $1 WHERE id = $2::int"
    w = Wire(gw, "mallory3", ("batch",))
    try:
        _approve_shape(gw, w, "mallory3", decoy, "ok", "1")
        w.send(parse("s", danger) + SYNC)
        assert not errors(w.until_ready())
        w.send(parse("s", decoy) + SYNC)  # refused by the server: "s" stays the dangerous one
        assert errors(w.until_ready())[0]["C"] == "42P05"
        w.send(bind("s", "0") + execute() + SYNC)
        _no_request_or_denied(gw, w, "mallory3", decoy)
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


def test_shape_approval_does_not_follow_latin1_lookalike_names(gw: Gateway, pg: TestPg, table: str) -> None:
    danger = f"UPDATE {table} SET balance = 0 WHERE id > $1::int"
    decoy = f"UPDATE {table} SET note = $1 WHERE id = $2::int"
    w = Wire(gw, "mallory4", ("batch",), client_encoding="LATIN1")
    try:
        _approve_shape(gw, w, "mallory4", decoy, "ok", "1")
        w.send(parse(b"s\xff", danger) + parse(b"s\xfe", decoy) + SYNC)
        assert not errors(w.until_ready())
        w.send(bind(b"s\xff", "0") + execute() + SYNC)
        _no_request_or_denied(gw, w, "mallory4", decoy)
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


def test_shape_approval_of_execute_does_not_cover_a_redefined_statement(
    gw: Gateway, pg: TestPg, table: str
) -> None:
    decoy = f"UPDATE {table} SET note = $1 WHERE id = 1"
    danger = f"UPDATE {table} SET balance = 0 WHERE note <> $1"
    w = Wire(gw, "mallory5", ("batch",))
    try:
        w.send(parse("s", decoy) + SYNC)
        assert not errors(w.until_ready())
        w.send(query("EXECUTE s('x')"))
        (record,) = pending(gw, "mallory5")
        approve_only(gw, record, "EXECUTE s('x')")
        assert not errors(w.until_ready())
        # the name now means something else; EXECUTE has the same shape with another constant
        w.send(close(b"S", "s") + parse("s", danger) + SYNC)
        assert not errors(w.until_ready())
        w.send(query("EXECUTE s('y')"))
        _no_request_or_denied(gw, w, "mallory5", "EXECUTE s('x')")
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


# -- SQL PREPARE over a protocol statement name ---------------------------------------------------------
def test_sql_prepare_cannot_redefine_a_protocol_statement(gw: Gateway, pg: TestPg, table: str) -> None:
    prepare = f"DEALLOCATE s; PREPARE s(text) AS UPDATE {table} SET balance = 0 WHERE note <> $1"
    w = Wire(gw, "mallory6", ("ai-agents",))
    try:
        w.send(parse("s", "SELECT $1::text") + SYNC)  # a read: its Binds are never checked again
        assert not errors(w.until_ready())
        w.send(query(prepare))
        found = pending(gw, "mallory6", timeout=3)
        if found:  # preparing runs nothing: an approver may well let it through
            approve_only(gw, found[0], prepare)
        w.until_ready()
        # every execution of an approve-class statement needs its own approval (as EXECUTE does)
        for _ in range(2):
            w.send(bind("s", "zzz") + execute() + SYNC)
            _no_request_or_denied(gw, w, "mallory6", "<nothing>")
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


# -- what the approver saw is what runs ----------------------------------------------------------------
def test_binds_sent_after_the_request_opened_do_not_ride_on_it(gw: Gateway, pg: TestPg, table: str) -> None:
    sql = f"UPDATE {table} SET balance = $2::int WHERE id = $1::int"
    w = Wire(gw, "mallory7", ("ai-agents",))
    try:
        w.send(parse("s", sql) + bind("s", "1", "99") + execute() + FLUSH)
        (record,) = pending(gw, "mallory7")
        assert record["params_masked"] == ["1", "99"]
        # more of the same batch, after the approver was shown one execution
        w.send(bind("s", "2", "0") + execute() + bind("s", "3", "0") + execute() + SYNC)
        time.sleep(0.3)
        approve_only(gw, record, sql)
        w.until_ready()
    finally:
        w.close()
    assert state(pg, table) in (UNTOUCHED, "1:99,2:100,3:100,4:100,5:100")


def test_every_bind_of_a_pipelined_batch_is_shown(gw: Gateway, pg: TestPg, table: str) -> None:
    """Every execution an approval releases is in the request (shown, and covered by the digest)."""
    sql = f"UPDATE {table} SET balance = $2::int WHERE id = $1::int"
    w = Wire(gw, "mallory8", ("ai-agents",))
    try:
        w.send(parse("s", sql) + bind("s", "1", "99") + execute() + bind("s", "2", "0") + execute() + SYNC)
        (record,) = pending(gw, "mallory8")
        assert record["params_masked"] == ["1", "99"]
        assert record["more_params_masked"] == [["2", "0"]]
        key = load_digest_key(gw.data_dir)
        assert record["statement_digest"] == statement_digest(key, sql, [b"1", b"99"], [[b"2", b"0"]])
        assert record["statement_digest"] != statement_digest(key, sql, [b"1", b"99"])
        assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
        w.until_ready()
    finally:
        w.close()
    assert state(pg, table) == "1:99,2:0,3:100,4:100,5:100"


def test_a_statement_too_long_to_show_is_not_put_to_an_approver(gw: Gateway, pg: TestPg, table: str) -> None:
    sql = (
        f"UPDATE {table} SET note = 'x' WHERE id = 1 /* {'.' * 70_000} */;"
        f" UPDATE {table} SET balance = 0 WHERE id > 0"
    )
    w = Wire(gw, "mallory9", ("ai-agents",))
    try:
        w.send(query(sql))
        found = pending(gw, "mallory9", timeout=3)
        if found:
            assert "balance = 0" in found[0]["statement"], "the approver must see the whole statement"
            decide(gw, found[0]["id"], "dora", ("dba",), "deny", "no")
        assert errors(w.until_ready())[0]["C"] == "42501"
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


# -- secrets ----------------------------------------------------------------------------------------------
def test_a_card_number_in_a_parser_error_is_masked_in_the_audit_event(gw: Gateway, table: str) -> None:
    w = Wire(gw, "mallory10", ("ai-agents",))
    try:
        w.send(query(f"UPDATE {table} SET note = 'a' WHERE id = {CARD} {CARD}"))
        assert errors(w.until_ready())[0]["C"] == "42501"
    finally:
        w.close()
    deadline = time.monotonic() + 10
    while not (denied := [e for e in events(gw, "policy_denied") if e.get("subject") == "mallory10"]):
        assert time.monotonic() < deadline, "no policy_denied event"
        time.sleep(0.1)
    assert denied and "reasons" in denied[0]
    assert CARD not in str(denied)


# -- memory ----------------------------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_closed_statements_are_not_kept_by_the_gateway(gw: Gateway, table: str) -> None:
    assert gw.pid is not None
    pad = "x" * (8 * 1024 * 1024)
    w = Wire(gw, "mallory11", ("ai-agents",))
    try:
        w.send(parse("warm", f"UPDATE {table} SET note = '{pad}' WHERE id = 1") + close(b"S", "warm") + SYNC)
        w.until_ready(60)
        before = _rss_mb(gw.pid)
        for i in range(12):  # approve-class statements, each closed at once (the server frees them)
            w.send(
                parse(f"t{i}", f"UPDATE {table} SET note = '{pad}' WHERE id = 1")
                + close(b"S", f"t{i}")
                + SYNC
            )
            assert not errors(w.until_ready(60))
        grown = _rss_mb(gw.pid) - before
    finally:
        w.close()
    assert grown < 64, f"the gateway kept {grown:.0f} MB for statements the server no longer has"


# -- the policy changes while a statement is held ----------------------------------------------------------
def test_an_approval_after_the_window_closed_does_not_run_the_statement(
    gateway_factory: Any, pg: TestPg
) -> None:
    # writes are approvable only until the next minute boundary (at least 12 s away); reads always
    now = dt.datetime.now(dt.UTC)
    end = (now + dt.timedelta(seconds=72)).replace(second=0, microsecond=0)
    start = end - dt.timedelta(hours=2)
    windowed = {
        "name": "agents-window",
        "subjects": ["group:ai-agents"],
        "connections": ["bankdb"],
        "approve": ["write"],
        "approvers": ["group:dba"],
        "window": {"hours": f"{start:%H:%M}-{end:%H:%M}"},
    }
    reads = {"name": "reads", "subjects": ["group:ai-agents"], "connections": ["bankdb"], "allow": ["read"]}
    gw: Gateway = gateway_factory(extra={"policy": [windowed, reads, DBA]})
    name = f"acct_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {name} (id int PRIMARY KEY, balance int); INSERT INTO {name} VALUES (1, 100)",
        user="app",
    )
    try:
        w = Wire(gw, "mallory12", ("ai-agents",))
        try:
            w.send(query(f"UPDATE {name} SET balance = 0 WHERE id = 1"))
            (record,) = pending(gw, "mallory12")
            time.sleep(max(0.0, (end - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
            # the request outlives the window (its timeout is 15 minutes); writes are now refused
            assert decide(gw, record["id"], "dora", ("dba",), "approve").status_code == 200
            answer = w.until_ready(20)
            assert [e["C"] for e in errors(answer)] == ["42501"], answer
        finally:
            w.close()
        assert pg.psql(f"SELECT balance FROM {name}", user="app") == "100"
    finally:
        pg.psql(f"DROP TABLE {name}", user="app")


# -- statement names the gateway and the server would read differently ---------------------------------
def test_execute_of_a_name_truncated_differently_is_not_a_read(gw: Gateway, pg: TestPg, table: str) -> None:
    # In LATIN1, \xe9 is "é" (2 bytes in the server's UTF-8): "a"*61 + "é" is 63 bytes, a whole
    # identifier to the server. Decoded as UTF-8 it is U+FFFD (3 bytes): the gateway's parser cuts the
    # identifier to 63 bytes, "a"*61 — another name, which the attacker prepares as a read.
    long = b"a" * 61 + b"\xe9"
    w = Wire(gw, "mallory14", ("ai-agents",), client_encoding="LATIN1")
    try:
        w.send(parse(long, f"UPDATE {table} SET balance = 0 WHERE id > 0") + SYNC)  # only prepares
        w.until_ready()
        w.send(query(f"PREPARE {'a' * 61} AS SELECT 1"))
        w.until_ready()
        w.send(query(b"EXECUTE " + long))
        _no_request_or_denied(gw, w, "mallory14", "<nothing>")
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


# -- the rest of a released batch ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "s"])
def test_a_statement_reparsed_after_a_released_bind_is_held_again(
    gw: Gateway, pg: TestPg, table: str, name: str
) -> None:
    first = f"UPDATE {table} SET note = $1 WHERE id = 1"
    second = f"UPDATE {table} SET balance = 0 WHERE id > $1::int"
    redefine = close(b"S", name) if name else b""  # the unnamed statement is simply replaced
    user = f"mallory15{name}"
    w = Wire(gw, user, ("ai-agents",))
    try:
        w.send(
            parse(name, first) + bind(name, "ok") + execute()
            + redefine + parse(name, second) + bind(name, "0") + execute() + SYNC
        )  # fmt: skip
        (record,) = pending(gw, user)
        approve_only(gw, record, first)
        (again,) = pending(gw, user)  # the second Bind is a new request
        assert again["id"] != record["id"] and again["statement"] == second
        approve_only(gw, again, first)
        answer = w.until_ready()
        assert tags(answer) == ["UPDATE 1"] and errors(answer)[0]["C"] == "42501"
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


def test_sql_between_a_released_bind_and_its_sync_is_checked(gw: Gateway, pg: TestPg, table: str) -> None:
    first = f"UPDATE {table} SET note = $1 WHERE id = 1"
    w = Wire(gw, "mallory16", ("ai-agents",))
    try:
        w.send(
            parse("s", first) + bind("s", "ok") + execute()
            + query(f"UPDATE {table} SET balance = 0 WHERE id > 0") + bind("s", "again") + execute() + SYNC
        )  # fmt: skip
        (record,) = pending(gw, "mallory16")
        approve_only(gw, record, first)
        (again,) = pending(gw, "mallory16")
        approve_only(gw, again, first)  # the Query: denied
        # the Bind after it was not kept with the released one: it is a request of its own
        (third,) = pending(gw, "mallory16")
        assert (third["statement"], third["params_masked"]) == (first, ["again"])
        assert decide(gw, third["id"], "dora", ("dba",), "deny", "one is enough").status_code == 200
        answer = w.until_ready() + w.until_ready()
        assert tags(answer) == ["UPDATE 1"] and [e["C"] for e in errors(answer)] == ["42501", "42501"]
    finally:
        w.close()
    assert state(pg, table) == UNTOUCHED


def test_binds_sent_after_the_release_of_an_open_batch_are_checked(
    gw: Gateway, pg: TestPg, table: str
) -> None:
    # psycopg's pipeline mode does this: Flush to fetch a result, the Sync only at the pipeline's end
    sql = f"UPDATE {table} SET balance = $2::int WHERE id = $1::int"
    w = Wire(gw, "mallory17", ("ai-agents",))
    try:
        w.send(parse("s", sql) + bind("s", "1", "99") + execute() + FLUSH)
        (record,) = pending(gw, "mallory17")
        approve_only(gw, record, sql)
        deadline = time.monotonic() + 15
        while (msg := w.read())[0] != b"C":  # the approved execution's result
            assert time.monotonic() < deadline
        assert msg[1].startswith(b"UPDATE 1")
        w.send(bind("s", "2", "0") + execute() + SYNC)  # the same statement, the same batch
        _no_request_or_denied(gw, w, "mallory17", "<nothing>")
    finally:
        w.close()
    assert state(pg, table) == "1:99,2:100,3:100,4:100,5:100"
