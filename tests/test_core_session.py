"""hoopgw._core.PgSession: framing, zero-copy forwarding and the audit state machine."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence

import pytest

from hoopgw import PgProtocolError, _core


def msg(code: str, body: bytes = b"") -> bytes:
    return _core.encode_message(ord(code), body)


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def query(sql: str) -> bytes:
    return msg("Q", cstr(sql))


def parse(name: str, sql: str) -> bytes:
    return msg("P", cstr(name) + cstr(sql) + struct.pack("!h", 0))


def bind(portal: str, stmt: str, params: Sequence[bytes | None], formats: Sequence[int] = ()) -> bytes:
    body = (
        cstr(portal)
        + cstr(stmt)
        + struct.pack("!h", len(formats))
        + b"".join(struct.pack("!h", f) for f in formats)
    )
    body += struct.pack("!h", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    return msg("B", body + struct.pack("!h", 0))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return msg("E", cstr(portal) + struct.pack("!i", max_rows))


def describe(kind: str, name: str) -> bytes:
    return msg("D", kind.encode() + cstr(name))


SYNC = msg("S")
FLUSH = msg("H")
TERMINATE = msg("X")
PARSE_COMPLETE = msg("1")
BIND_COMPLETE = msg("2")
NO_DATA = msg("n")


def row_description(*names: str) -> bytes:
    body = struct.pack("!h", len(names))
    for n in names:
        body += cstr(n) + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
    return msg("T", body)


def data_row(*values: bytes | None) -> bytes:
    body = struct.pack("!h", len(values))
    for v in values:
        body += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return msg("D", body)


def complete(tag: str) -> bytes:
    return msg("C", cstr(tag))


def ready(status: str = "I") -> bytes:
    return _core.encode_ready_for_query(status)


def error(code: str, message: str) -> bytes:
    return _core.encode_error("ERROR", code, message)


def feed_all(
    session: _core.PgSession, client: Iterable[bytes], server: Iterable[bytes], now: int = 0
) -> list[_core.Statement]:
    """Feed client reads then server reads; check forwarding is lossless; return statements."""
    out: list[_core.Statement] = []
    client = list(client)
    fwd = b"".join(session.feed_client(c, now)[0] for c in client)
    assert fwd == b"".join(client)
    forwarded = []
    for s in server:
        f, done = session.feed_server(s, now + 1)
        forwarded.append(f)
        if done is not None:
            assert done, "done is None when nothing completed"
            out.extend(done)
    assert b"".join(forwarded) == b"".join(server)
    return out


def test_whole_frames_are_forwarded_without_copy() -> None:
    s = _core.PgSession()
    data = query("select 1") + query("select 2")
    fwd, terminate, reply = s.feed_client(data, 1)
    assert fwd is data
    assert terminate is False
    assert reply is None
    assert s.pending == 2
    reply = row_description("a") + data_row(b"1") + complete("SELECT 1") + ready()
    fwd, done = s.feed_server(reply, 2)
    assert fwd is reply
    assert done is not None and len(done) == 1
    assert s.pending == 1


def test_partial_frames_are_buffered() -> None:
    s = _core.PgSession()
    data = query("select 1") + query("select 2")
    cut = len(query("select 1")) + 3
    fwd, _, _ = s.feed_client(data[:cut], 1)
    assert fwd == query("select 1")
    assert s.pending == 1
    fwd, _, _ = s.feed_client(data[cut:], 2)
    assert fwd == query("select 2")
    assert s.pending == 2
    fwd, _, _ = s.feed_client(b"", 3)
    assert fwd == b""


def test_server_reads_without_completion_return_none() -> None:
    s = _core.PgSession()
    s.feed_client(query("select 1"), 1)
    _, done = s.feed_server(row_description("a") + data_row(b"1"), 2)
    assert done is None
    _, done = s.feed_server(complete("SELECT 1") + ready("T"), 3)
    assert done is not None
    assert s.tx_status == "T"


def test_terminate() -> None:
    s = _core.PgSession()
    _, terminate, _ = s.feed_client(TERMINATE, 1)
    assert terminate is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x07\0\0\0\x04", "invalid frontend message type 0x07"),
        (b"p\0\0\0\x09pass", "invalid frontend message type 0x70 ('p')"),
        (b"Q\x7f\xff\xff\xff", "message length 2147483647 exceeds limit 67108864"),
        (b"Q\0\0\0\x03", "invalid message length 3"),
        (b"Q\xff\xff\xff\xff", "invalid message length -1"),
        (msg("Q", b"no terminator"), "query: missing nul terminator"),
        (msg("E", b"\0\0"), "execute: unexpected end of message"),
        (msg("S", b"x"), "sync: 1 trailing bytes"),
    ],
)
def test_client_protocol_errors(data: bytes, message: str) -> None:
    with pytest.raises(PgProtocolError, match=f"^{re.escape(message)}$"):
        _core.PgSession().feed_client(data, 1)


def test_invalid_type_is_rejected_before_the_frame_is_complete() -> None:
    with pytest.raises(PgProtocolError):
        _core.PgSession().feed_client(b"\x07", 1)


def test_server_guard_and_unknown_types() -> None:
    s = _core.PgSession(max_message_size=1000)
    with pytest.raises(PgProtocolError, match=r"^message length 1001 exceeds limit 1000$"):
        s.feed_server(b"D" + struct.pack("!i", 1001), 1)
    s = _core.PgSession(max_message_size=1000)
    unknown = msg("~", b"whatever")
    fwd, done = s.feed_server(unknown, 1)
    assert fwd is unknown and done is None


def test_simple_query_statement() -> None:
    s = _core.PgSession()
    done = feed_all(
        s,
        [query("select 1; show x; insert into t values (1)")],
        [
            row_description("a") + data_row(b"1") + data_row(b"2") + complete("SELECT 2"),
            row_description("x") + data_row(b"on") + complete("SHOW") + complete("INSERT 0 1"),
            ready("I"),
        ],
        now=100,
    )
    [st] = done
    assert st.kind == "query"
    assert st.sql == "select 1; show x; insert into t values (1)"
    assert (st.statement_name, st.portal, st.params) == (None, None, None)
    assert st.tags == ["SELECT 2", "SHOW", "INSERT 0 1"]
    assert st.rows == 4
    assert (st.status, st.error) == ("ok", None)
    assert (st.started_ns, st.ended_ns) == (100, 101)
    assert "select 1" in repr(st)


def test_pipelined_extended_protocol() -> None:
    s = _core.PgSession()
    client = [
        parse("s1", "select $1::text, $2::bytea, $3::int")
        + bind("", "s1", [b"hi", b"\x00\xff", None], formats=[0, 1, 0])
        + describe("P", "")
        + execute()
        + SYNC
        + parse("", "insert into t values ($1)")
        + bind("p2", "", [b"7"])
        + execute("p2")
        + SYNC
    ]
    assert s.feed_client(client[0], 5)[0] is client[0]
    assert s.pending == 9
    done = feed_all(
        s,
        [],
        [
            PARSE_COMPLETE + BIND_COMPLETE + row_description("text", "bytea", "int"),
            data_row(b"hi", b"\\x00ff", None) + complete("SELECT 1") + ready(),
            PARSE_COMPLETE + BIND_COMPLETE + complete("INSERT 0 1") + ready(),
        ],
    )
    assert s.pending == 0
    first, second = done
    assert first.kind == "execute"
    assert first.sql == "select $1::text, $2::bytea, $3::int"
    assert (first.statement_name, first.portal) == ("s1", "")
    assert first.params == ["hi", "\\x00ff", None]
    assert (first.tags, first.rows, first.status) == (["SELECT 1"], 1, "ok")
    assert second.sql == "insert into t values ($1)"
    assert (second.statement_name, second.portal, second.params) == ("", "p2", ["7"])
    assert (second.tags, second.rows) == (["INSERT 0 1"], 1)


def test_errors_in_a_batch() -> None:
    s = _core.PgSession()
    client = [
        parse("bad", "selec 1") + bind("", "bad", []) + execute() + SYNC,
        parse("", "select 1/$1::int") + bind("", "", [b"0"]) + execute() + execute() + SYNC,
    ]
    done = feed_all(
        s,
        client,
        [
            error("42601", 'syntax error at or near "selec"') + ready(),
            PARSE_COMPLETE + BIND_COMPLETE + error("22012", "division by zero") + ready(),
        ],
    )
    assert [(d.kind, d.status) for d in done] == [
        ("parse", "error"),
        ("execute", "skipped"),
        ("execute", "error"),
        ("execute", "skipped"),
    ]
    assert done[0].sql == "selec 1"
    assert done[0].statement_name == "bad"
    assert done[0].error == ("42601", 'syntax error at or near "selec"')
    assert done[2].error == ("22012", "division by zero")
    assert done[2].params == ["0"]
    assert done[3].error is None
    assert s.pending == 0


def copying(s: _core.PgSession) -> bool:
    return s.in_copy


def test_copy_in_extended_like_libpq() -> None:
    s = _core.PgSession()
    copy_in = msg("G", b"\0" + struct.pack("!hh", 1, 0))
    s.feed_client(parse("", "copy t from stdin") + bind("", "", []) + describe("P", "") + execute() + SYNC, 1)
    _, done = s.feed_server(PARSE_COMPLETE + BIND_COMPLETE + NO_DATA + copy_in, 2)
    assert done is None
    assert s.in_copy
    s.feed_client(msg("d", b"1\n") + msg("d", b"2\n") + msg("c") + SYNC, 3)
    _, done = s.feed_server(complete("COPY 2") + ready(), 4)
    assert not copying(s)
    assert done is not None
    [st] = done
    assert (st.kind, st.tags, st.rows, st.started_ns, st.ended_ns) == ("execute", ["COPY 2"], 2, 1, 4)
    assert s.pending == 0


def test_function_call() -> None:
    s = _core.PgSession()
    call = msg("F", struct.pack("!ihh", 1598, 0, 1) + struct.pack("!i", 1) + b"5" + struct.pack("!h", 0))
    done = feed_all(s, [call], [msg("V", struct.pack("!i", 3) + b"0.5") + ready()])
    [st] = done
    assert (st.kind, st.sql, st.params, st.status) == ("function", "function call oid=1598", ["5"], "ok")


def test_async_messages_do_not_consume_requests() -> None:
    s = _core.PgSession()
    notice = _core.encode_error("NOTICE", "00000", "hello", notice=True)
    notify = msg("A", struct.pack("!i", 1) + cstr("chan") + cstr("payload"))
    status = _core.encode_parameter_status("TimeZone", "UTC")
    done = feed_all(
        s,
        [query("listen chan")],
        [notice + status + complete("LISTEN") + notify + ready(), notify + status + notice],
    )
    assert [d.tags for d in done] == [["LISTEN"]]
    assert s.pending == 0


def test_portal_suspended() -> None:
    s = _core.PgSession()
    done = feed_all(
        s,
        [parse("", "select 1") + bind("c", "", []) + execute("c", 2) + execute("c", 2) + SYNC],
        [
            PARSE_COMPLETE
            + BIND_COMPLETE
            + data_row(b"1")
            + data_row(b"2")
            + msg("s")
            + data_row(b"3")
            + complete("SELECT 1")
            + ready()
        ],
    )
    assert [(d.status, d.rows, d.portal) for d in done] == [("suspended", 2, "c"), ("ok", 1, "c")]


# -- SQL policy hook -----------------------------------------------------------------------------

READ, WRITE = 1, 2
DENIED = _core.encode_error("ERROR", "42501", "permission denied by the gateway policy")


class Check:
    """A policy check: select is READ, anything else WRITE (denied); records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int, str | None]] = []

    def __call__(self, sql: str | None, cached: int, name: str | None) -> tuple[int, bool, bytes | None]:
        self.calls.append((sql, cached, name))
        if sql is None:
            return WRITE, False, DENIED
        mask = READ if sql.lstrip().lower().startswith("select") else WRITE
        return mask, True, DENIED if mask & WRITE else None


def policy_session(cache: _core.SqlCache | None = None) -> tuple[_core.PgSession, Check]:
    s = _core.PgSession()
    check = Check()
    s.set_policy(cache, check, READ)
    return s, check


def test_policy_cached_shapes_skip_the_check() -> None:
    cache = _core.SqlCache(100)
    s, check = policy_session(cache)
    for aid in (1, 2, 3):
        data = query(f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid};")
        fwd, terminate, reply = s.feed_client(data, 1)
        assert (fwd, terminate, reply) == (data, False, None)
        assert fwd is data
    assert check.calls == [("SELECT abalance FROM pgbench_accounts WHERE aid = 1;", -1, None)]
    key = _core.normalize_sql(b"SELECT abalance FROM pgbench_accounts WHERE aid = 9;")
    assert key is not None and cache.get(key) == READ and len(cache) == 1
    assert s.allow_mask == READ
    # a named Parse is always checked, with the cached mask
    s.feed_client(parse("s1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;") + SYNC, 2)
    assert check.calls[-1] == ("SELECT abalance FROM pgbench_accounts WHERE aid = $1;", -1, "s1")


def test_policy_denies_a_query_in_place() -> None:
    s, check = policy_session(_core.SqlCache(100))
    fwd, _, reply = s.feed_client(query("delete from t"), 1)
    assert fwd == b""
    assert reply == DENIED + ready("I")
    assert s.pending == 0
    # pipelined: the answer comes between the neighbours' answers, with the latest tx status
    fwd, _, reply = s.feed_client(query("select 1") + query("delete from t") + query("select 2"), 2)
    assert (fwd, reply) == (query("select 1") + query("select 2"), None)
    assert check.calls[-1] == ("delete from t", WRITE, None), "cached but not allowed: checked"
    first, second = complete("SELECT 1") + ready("T"), complete("SELECT 1") + ready("T")
    out, done = s.feed_server(first + second, 3)
    assert out == first + DENIED + ready("T") + second
    assert done is not None and [d.sql for d in done] == ["select 1", "select 2"]
    assert s.pending == 0
    # allowing the class: forwarded without a call
    s.allow_mask = READ | WRITE
    n = len(check.calls)
    assert s.feed_client(query("delete from t"), 4)[0] == query("delete from t")
    assert len(check.calls) == n


def test_policy_denied_parse_skips_to_sync() -> None:
    s, _ = policy_session()
    batch = parse("", "update t set a = 1") + bind("", "", []) + execute() + SYNC
    fwd, _, reply = s.feed_client(batch, 1)
    assert (fwd, reply) == (SYNC, DENIED)
    out, done = s.feed_server(ready(), 2)
    assert (out, done) == (ready(), None)


def test_policy_check_failure_denies_with_xx000(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: seen.append(u.exc_value))

    def broken(sql: str | None, cached: int, name: str | None) -> tuple[int, bool, bytes | None]:
        raise RuntimeError("policy bug")

    s = _core.PgSession()
    s.set_policy(None, broken, 0)
    fwd, _, reply = s.feed_client(query("select 1"), 1)
    assert fwd == b"" and reply is not None
    assert reply.endswith(ready("I"))
    fields = _core.decode_fields(reply[5 : -len(ready("I"))])
    assert (fields["C"], fields["M"]) == ("XX000", "the gateway could not check this statement")
    assert [type(e) for e in seen] == [RuntimeError]


def holding(s: _core.PgSession) -> bool:
    """``s.holding``, read anew (mypy would keep an asserted property narrowed)."""
    return s.holding


class HoldingCheck:
    """select is READ; anything else WRITE, held (a 4-tuple); "drop" denied (a 3-tuple)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int, str | None]] = []

    def __call__(
        self, sql: str | None, cached: int, name: str | None
    ) -> tuple[int, bool, bytes | None] | tuple[int, bool, bytes | None, bool]:
        self.calls.append((sql, cached, name))
        if sql is not None and sql.startswith("select"):
            return READ, True, None, False
        if sql is not None and sql.startswith("drop"):
            return WRITE, True, DENIED
        return WRITE, True, None, True


def test_policy_holds_a_statement_until_released() -> None:
    s = _core.PgSession()
    check = HoldingCheck()
    s.set_policy(None, check, READ)
    assert (s.holding, s.held) == (False, None)
    wire = query("select 1") + query("insert into t values (1)") + query("select 2")
    fwd, terminate, reply = s.feed_client(wire, 1)
    assert (fwd, terminate, reply) == (query("select 1"), False, None)
    assert s.holding and s.held == ("query", "insert into t values (1)", None)
    assert "holding=True" in repr(s)
    # kept while holding; the server direction flows on
    assert s.feed_client(query("drop table t"), 2) == (b"", False, None)
    out, done = s.feed_server(complete("SELECT 1") + ready("T"), 3)
    assert out == complete("SELECT 1") + ready("T") and done is not None
    fwd, terminate, reply = s.release(4)
    assert (fwd, terminate, reply) == (query("insert into t values (1)") + query("select 2"), False, None)
    assert not holding(s) and s.pending == 3
    assert [c[0] for c in check.calls] == ["select 1", "insert into t values (1)", "select 2", "drop table t"]
    answers = complete("INSERT 0 1") + ready("T") + complete("SELECT 1") + ready("T")
    out, done = s.feed_server(answers, 5)
    assert out == answers + DENIED + ready("T"), "the denied drop is answered after the others"
    assert done is not None and [d.sql for d in done] == ["insert into t values (1)", "select 2"]
    assert s.release(6) == (b"", False, None), "nothing held: nothing to do"


def test_policy_rejects_a_held_batch() -> None:
    s = _core.PgSession()
    s.set_policy(None, HoldingCheck(), READ)
    batch = parse("", "update t set a = 1") + bind("", "", []) + execute() + SYNC
    assert s.feed_client(batch + query("select 1"), 1) == (b"", False, None)
    assert s.held == ("parse", "update t set a = 1", "")
    rejected = _core.encode_error("ERROR", "42501", "approval denied")
    fwd, terminate, reply = s.reject(rejected, 2)
    assert (fwd, terminate, reply) == (SYNC + query("select 1"), False, rejected)
    assert not s.holding


def test_policy_terminate_while_holding() -> None:
    s = _core.PgSession()
    s.set_policy(None, HoldingCheck(), READ)
    s.feed_client(query("delete from t where id = 1"), 1)
    fwd, terminate, reply = s.feed_client(query("select 1") + TERMINATE, 2)
    assert (fwd, terminate, reply) == (TERMINATE, True, None)
    assert not s.holding


def test_policy_held_bytes_are_bounded() -> None:
    s = _core.PgSession(max_message_size=1000)
    s.set_policy(None, HoldingCheck(), READ)
    s.feed_client(query("delete from t where id = 1"), 1)
    with pytest.raises(PgProtocolError, match="while a statement was held"):
        for _ in range(4):
            s.feed_client(query("select '" + "x" * 900 + "'"), 2)


def test_sql_cache() -> None:
    cache = _core.SqlCache(2)
    cache.insert(b"a", 1)
    cache.insert(b"b", 2)
    assert (len(cache), cache.get(b"a"), cache.get(b"x"), cache.capacity) == (2, 1, None, 2)
    cache.insert(b"c", 3)
    assert len(cache) == 1, "full: cleared, then inserted"
    cache.clear()
    assert len(cache) == 0
    off = _core.SqlCache(0)
    off.insert(b"a", 1)
    assert off.get(b"a") is None
