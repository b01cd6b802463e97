"""hoopgw._core startup-phase codecs and Framer, driven from Python."""

from __future__ import annotations

import re
import struct

import pytest

from hoopgw import PgProtocolError, _core


def test_module_constants() -> None:
    assert _core.DEFAULT_MAX_MESSAGE_SIZE == 64 * 1024 * 1024
    assert _core.__version__ == "0.1.0"


def test_startup_message_round_trip() -> None:
    params = [("user", "alice"), ("database", "bank"), ("application_name", "psql")]
    wire = _core.encode_startup_message(params)
    assert wire[4:8] == struct.pack("!i", 196608)
    consumed, packet = _core.decode_startup(wire + b"extra")
    assert consumed == len(wire)
    assert packet is not None
    assert packet.kind == "startup"
    assert packet.protocol == (3, 0)
    assert packet.params == params
    assert (packet.process_id, packet.secret_key) == (0, b"")
    # every strict prefix asks for more bytes
    for cut in range(len(wire)):
        assert _core.decode_startup(wire[:cut]) == (0, None)


def test_protocol_3_2_is_accepted() -> None:
    wire = _core.encode_startup_message([("user", "a")], protocol=(3, 2))
    _, packet = _core.decode_startup(wire)
    assert packet is not None and packet.protocol == (3, 2)


def test_ssl_gssenc_and_cancel_requests() -> None:
    assert _core.encode_ssl_request() == struct.pack("!ii", 8, 80877103)
    _, ssl = _core.decode_startup(_core.encode_ssl_request())
    assert ssl is not None and (ssl.kind, ssl.protocol) == ("ssl", (0, 0))
    _, gss = _core.decode_startup(struct.pack("!ii", 8, 80877104))
    assert gss is not None and gss.kind == "gssenc"
    wire = _core.encode_cancel_request(4242, b"\x01\x02\x03\x04")
    assert wire == struct.pack("!iii", 16, 80877102, 4242) + b"\x01\x02\x03\x04"
    _, cancel = _core.decode_startup(wire)
    assert cancel is not None
    assert (cancel.kind, cancel.process_id, cancel.secret_key) == ("cancel", 4242, b"\x01\x02\x03\x04")
    # protocol 3.2: longer keys
    long_key = bytes(range(32))
    _, cancel = _core.decode_startup(_core.encode_cancel_request(1, long_key))
    assert cancel is not None and cancel.secret_key == long_key


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (struct.pack("!ii", 8, 0x00020000), "startup packet: unsupported protocol 2.0"),
        (struct.pack("!ii", 8, 80877105), "startup packet: unsupported protocol 1234.5681"),
        (struct.pack("!ii", 8, 0x00040000), "startup packet: unsupported protocol 4.0"),
        (struct.pack("!i", 4), "startup packet: invalid length 4"),
        (struct.pack("!i", -1), "startup packet: invalid length -1"),
        (struct.pack("!i", 10001), "message length 10001 exceeds limit 10000"),
        (struct.pack("!iii", 12, 80877103, 0), "startup packet: 4 trailing bytes"),
        (struct.pack("!ii", 13, 196608) + b"user\0", "startup packet: missing nul terminator"),
        (struct.pack("!iii", 14, 80877102, 1) + b"ab", "startup packet: invalid secret key length 2"),
        (struct.pack("!ii", 12, 196608) + b"\xff\0a\0", "startup packet: invalid utf-8 in parameter name"),
    ],
)
def test_bad_startup_packets(wire: bytes, message: str) -> None:
    with pytest.raises(PgProtocolError, match=f"^{re.escape(message)}$"):
        _core.decode_startup(wire)


def test_startup_max_size() -> None:
    wire = _core.encode_startup_message([("user", "x" * 100)])
    with pytest.raises(PgProtocolError, match="exceeds limit 50"):
        _core.decode_startup(wire, max_size=50)
    assert _core.decode_startup(wire, max_size=len(wire))[0] == len(wire)


def test_framer_incremental() -> None:
    wire = (
        _core.encode_authentication(10, b"SCRAM-SHA-256\0\0")
        + _core.encode_parameter_status("server_version", "17.0")
        + _core.encode_backend_key_data(7, b"abcd")
        + _core.encode_ready_for_query("I")
    )
    f = _core.Framer()
    got = []
    for b in wire:
        f.feed(bytes([b]))
        while (m := f.next_message()) is not None:
            got.append(m)
    assert [t for t, _ in got] == [ord("R"), ord("S"), ord("K"), ord("Z")]
    assert _core.decode_authentication(got[0][1]) == (10, b"SCRAM-SHA-256\0\0")
    assert _core.decode_parameter_status(got[1][1]) == ("server_version", "17.0")
    assert _core.decode_backend_key_data(got[2][1]) == (7, b"abcd")
    assert _core.decode_ready_for_query(got[3][1]) == "I"
    assert f.buffered == 0


def test_framer_take_remaining_and_guard() -> None:
    f = _core.Framer(max_message_size=100)
    f.feed(_core.encode_ready_for_query("T") + b"tail")
    assert f.next_message() == (ord("Z"), b"T")
    assert f.next_message() is None
    assert f.buffered == 4
    assert f.take_remaining() == b"tail"
    assert f.buffered == 0
    f.feed(b"E\x7f\xff\xff\xff")
    with pytest.raises(PgProtocolError, match=r"^message length 2147483647 exceeds limit 100$"):
        f.next_message()
    f = _core.Framer()
    f.feed(b"E\x00\x00\x00\x02")
    with pytest.raises(PgProtocolError, match=r"^invalid message length 2$"):
        f.next_message()


def test_encode_error_and_notice() -> None:
    wire = _core.encode_error("ERROR", "42501", "denied by rule agents", detail="d", hint="h")
    assert wire[:1] == b"E"
    assert struct.unpack("!i", wire[1:5])[0] == len(wire) - 1
    body = wire[5:]
    assert body == b"SERROR\0VERROR\0C42501\0Mdenied by rule agents\0Dd\0Hh\0\0"
    assert _core.decode_fields(body) == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42501",
        "M": "denied by rule agents",
        "D": "d",
        "H": "h",
    }
    notice = _core.encode_error("NOTICE", "00000", "held for approval", notice=True)
    assert notice[:1] == b"N"
    assert _core.decode_fields(notice[5:])["M"] == "held for approval"
    with pytest.raises(PgProtocolError):
        _core.encode_error("ERROR", "42501", "nul\0inside")


def test_small_encoders() -> None:
    assert _core.encode_message(ord("Z"), b"I") == b"Z\0\0\0\x05I"
    assert _core.encode_authentication(0) == b"R\0\0\0\x08\0\0\0\0"
    assert _core.encode_password(b"secret\0") == b"p\0\0\0\x0bsecret\0"
    assert _core.decode_password(b"secret\0") == b"secret"
    sasl = _core.encode_sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc")
    assert (
        sasl
        == b"p"
        + struct.pack("!i", 4 + 14 + 4 + 11)
        + b"SCRAM-SHA-256\0"
        + struct.pack("!i", 11)
        + b"n,,n=,r=abc"
    )
    nego = _core.encode_negotiate_protocol_version(0, ["_pq_.foo", "_pq_.bar"])
    assert nego == b"v" + struct.pack("!iii", 4 + 8 + 18, 0, 2) + b"_pq_.foo\0_pq_.bar\0"
    with pytest.raises(PgProtocolError):
        _core.encode_ready_for_query("X")
    with pytest.raises(PgProtocolError):
        _core.encode_backend_key_data(1, b"ab")


@pytest.mark.parametrize(
    ("fn", "body"),
    [
        (_core.decode_fields, b"SERROR"),
        (_core.decode_authentication, b"\0\0"),
        (_core.decode_backend_key_data, b"\0\0\0\x01ab"),
        (_core.decode_parameter_status, b"a\0b"),
        (_core.decode_password, b"no terminator"),
        (_core.decode_ready_for_query, b"Q"),
        (_core.decode_ready_for_query, b""),
    ],
)
def test_decoders_reject_malformed_bodies(fn: object, body: bytes) -> None:
    assert callable(fn)
    with pytest.raises(PgProtocolError):
        fn(body)
