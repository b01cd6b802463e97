"""Property tests of hoopgw._core: never crash on any input; chunking never changes the result."""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from hoopgw import PgProtocolError, _core

FRONTEND = b"QPBEDCSHXdcfF"


def msg(code: bytes, body: bytes = b"") -> bytes:
    return _core.encode_message(code[0], body)


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random boundaries (possibly with empty pieces)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@st.composite
def chunked_bytes(draw: st.DrawFn) -> list[bytes]:
    return draw(chunked(draw(st.binary(max_size=300))))


@st.composite
def framed_noise(draw: st.DrawFn) -> list[bytes]:
    """Frames with plausible headers and random bodies, then chunked."""
    frames = draw(
        st.lists(
            st.tuples(
                st.sampled_from(list(FRONTEND + b"RKZTIns123tGHWVAv\x00\xff")),
                st.binary(max_size=40),
                st.sampled_from([None, None, None, 0, 3, 5, 2**31 - 1]),
            ),
            max_size=10,
        )
    )
    wire = b"".join(
        bytes([code]) + struct.pack("!i", len(body) + 4 if length is None else length) + body
        for code, body, length in frames
    )
    return draw(chunked(wire))


def only_protocol_errors(pieces: list[bytes]) -> None:
    client = _core.PgSession(max_message_size=200)
    server = _core.PgSession(max_message_size=200)
    framer = _core.Framer(max_message_size=200)
    client_ok = server_ok = True
    for p in pieces:
        if client_ok:
            try:
                client.feed_client(p, 1)
            except PgProtocolError:
                client_ok = False
        if server_ok:
            try:
                server.feed_server(p, 2)
            except PgProtocolError:
                server_ok = False
        framer.feed(p)
    try:
        while (m := framer.next_message()) is not None:
            for decode in (
                _core.decode_fields,
                _core.decode_authentication,
                _core.decode_backend_key_data,
                _core.decode_parameter_status,
                _core.decode_password,
                _core.decode_ready_for_query,
            ):
                with contextlib.suppress(PgProtocolError):
                    decode(m[1])
    except PgProtocolError:
        pass
    with contextlib.suppress(PgProtocolError):
        _core.decode_startup(b"".join(pieces))
    assert client.pending >= 0 and server.tx_status in ("I", "T", "E")


@given(chunked_bytes())
def test_random_bytes_raise_only_protocol_errors(pieces: list[bytes]) -> None:
    only_protocol_errors(pieces)


@given(framed_noise())
def test_framed_noise_raises_only_protocol_errors(pieces: list[bytes]) -> None:
    only_protocol_errors(pieces)


@given(st.binary(max_size=64), st.data())
def test_startup_noise(body: bytes, data: st.DataObject) -> None:
    code = data.draw(st.sampled_from([196608, 196610, 80877102, 80877103, 80877104, 131072, 0]))
    length = data.draw(st.sampled_from([len(body) + 8, 8, 16, 3, -5]))
    try:
        consumed, packet = _core.decode_startup(struct.pack("!ii", length, code) + body)
    except PgProtocolError:
        return
    assert (consumed == 0) == (packet is None)


message_strategy = st.one_of(
    st.builds(lambda c, b: (ord(c), b), st.sampled_from("QPBEDCSHXdcfFRKZTInAN"), st.binary(max_size=100)),
    st.builds(lambda s: (ord("Z"), s.encode()), st.sampled_from("ITE")),
)


@given(st.lists(message_strategy, max_size=20), st.data())
def test_framer_round_trip_is_chunking_independent(
    messages: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    wire = b"".join(_core.encode_message(t, b) for t, b in messages)
    framer = _core.Framer()
    got = []
    for piece in data.draw(chunked(wire)):
        framer.feed(piece)
        while (m := framer.next_message()) is not None:
            got.append(m)
    assert got == messages
    assert framer.buffered == 0
    # the session forwards exactly the same bytes, whatever the chunking (only message types whose
    # bodies it does not decode: random bodies are not valid CommandComplete, ErrorResponse, ...)
    opaque = b"".join(_core.encode_message(t, b) for t, b in messages if t in b"DdNASKRV~")
    session = _core.PgSession()
    out = b"".join(session.feed_server(p, 0)[0] for p in data.draw(chunked(opaque)))
    assert out == opaque


@dataclass(frozen=True)
class Batch:
    """One Parse/Bind/Execute/Sync batch and how the server answers it."""

    name: str
    sql: str
    params: tuple[bytes | None, ...]
    binary: bool
    outcome: str  # "ok", "parse_error", "exec_error"
    rows: int


batches = st.lists(
    st.builds(
        Batch,
        name=st.sampled_from(["", "s1", "stmt_2"]),
        sql=st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30),
        params=st.lists(st.one_of(st.none(), st.binary(max_size=6)), max_size=4).map(tuple),
        binary=st.booleans(),
        outcome=st.sampled_from(["ok", "ok", "parse_error", "exec_error"]),
        rows=st.integers(0, 3),
    ),
    min_size=1,
    max_size=6,
)


def encode_batch(b: Batch) -> tuple[bytes, bytes]:
    client = msg(b"P", cstr(b.name) + cstr(b.sql) + struct.pack("!h", 0))
    body = (
        cstr("")
        + cstr(b.name)
        + struct.pack("!hh", 1, 1 if b.binary else 0)
        + struct.pack("!h", len(b.params))
    )
    for p in b.params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    client += msg(b"B", body + struct.pack("!h", 0)) + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S")
    ready = _core.encode_ready_for_query("I")
    if b.outcome == "parse_error":
        return client, _core.encode_error("ERROR", "42601", "syntax error") + ready
    server = msg(b"1") + msg(b"2")
    server += b"".join(msg(b"D", struct.pack("!hi", 1, 1) + b"x") for _ in range(b.rows))
    if b.outcome == "exec_error":
        return client, server + _core.encode_error("ERROR", "22012", "division by zero") + ready
    return client, server + msg(b"C", cstr(f"SELECT {b.rows}")) + ready


def render(p: bytes | None, binary: bool) -> str | None:
    if p is None:
        return None
    return "\\x" + p.hex() if binary else p.decode("utf-8", "replace")


@settings(max_examples=150)
@given(batches, st.data())
def test_pipelined_batches_yield_the_right_statements(bs: list[Batch], data: st.DataObject) -> None:
    encoded = [encode_batch(b) for b in bs]
    client = b"".join(c for c, _ in encoded)
    server = b"".join(s for _, s in encoded)
    session = _core.PgSession()
    for piece in data.draw(chunked(client)):
        session.feed_client(piece, 7)
    assert session.pending == 4 * len(bs)
    done: list[_core.Statement] = []
    for piece in data.draw(chunked(server)):
        _, d = session.feed_server(piece, 9)
        done.extend(d or [])
    assert session.pending == 0

    expected: list[tuple[object, ...]] = []
    for b in bs:
        params = [render(p, b.binary) for p in b.params]
        if b.outcome == "parse_error":
            # the Execute that would have run the rejected statement is on record as skipped
            expected.append(("parse", b.sql, b.name, None, None, [], 0, "error", ("42601", "syntax error")))
            expected.append(("execute", b.sql, b.name, "", params, [], 0, "skipped", None))
            continue
        if b.outcome == "exec_error":
            expected.append(
                ("execute", b.sql, b.name, "", params, [], b.rows, "error", ("22012", "division by zero"))
            )
        else:
            expected.append(("execute", b.sql, b.name, "", params, [f"SELECT {b.rows}"], b.rows, "ok", None))
    got = [
        (d.kind, d.sql, d.statement_name, d.portal, d.params, d.tags, d.rows, d.status, d.error) for d in done
    ]
    assert got == expected
    assert all((d.started_ns, d.ended_ns) == (7, 9) for d in done)
