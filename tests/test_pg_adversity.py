"""Hostile and broken peers against the REAL gateway: raw sockets, by-hand protocol, dying upstreams.

Every test speaks to the gateway's listen port with bounded timeouts and ends by proving the gateway still
serves an ordinary psql client. Error answers must be real ErrorResponse messages ('E' with a SQLSTATE).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from ._support.gateway import Gateway

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
CANCEL_CODE = 80877102
IO_TIMEOUT = 5.0

Message = tuple[bytes, bytes]
Admin = psycopg.Connection[tuple[Any, ...]]


# ------------------------------------------------------------------------------------------ wire helpers
def typed(kind: bytes, body: bytes = b"") -> bytes:
    """A typed protocol message: type byte, int32 length (itself included), body."""
    return kind + struct.pack("!i", len(body) + 4) + body


def startup_packet(params: Sequence[tuple[str, str]], version: tuple[int, int] = (3, 0)) -> bytes:
    body = struct.pack("!hh", *version)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params) + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def cancel_packet(process_id: int, secret: bytes) -> bytes:
    return struct.pack("!iii", 12 + len(secret), CANCEL_CODE, process_id) + secret


def query(sql: str) -> bytes:
    return typed(b"Q", sql.encode() + b"\0")


def fields(body: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse body -> {field code: value}."""
    out: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            out[part[:1].decode()] = part[1:].decode(errors="replace")
    return out


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Wire:
    """A blocking socket with a message buffer; every read is bounded by a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False at EOF (or reset), AssertionError at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for the gateway (buffered {self.buf[:200]!r})")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as exc:
            raise AssertionError(f"timed out waiting for the gateway (buffered {self.buf[:200]!r})") from exc
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def raw(self, n: int, timeout: float = IO_TIMEOUT) -> bytes:
        """Exactly ``n`` bytes (fewer only at EOF)."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < n and self._fill(deadline):
            pass
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self, timeout: float = IO_TIMEOUT) -> Message | None:
        """The next typed message, or None at a clean EOF between messages."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 5:
                (length,) = struct.unpack("!i", self.buf[1:5])
                assert 4 <= length < 1 << 24, f"implausible message from the gateway: {self.buf[:32]!r}"
                if len(self.buf) >= 1 + length:
                    kind, body = self.buf[:1], self.buf[5 : 1 + length]
                    self.buf = self.buf[1 + length :]
                    return kind, body
            if not self._fill(deadline):
                assert not self.buf, f"connection closed inside a message: {self.buf!r}"
                return None

    def until(self, kind: bytes, timeout: float = IO_TIMEOUT, *, errors: bool = False) -> list[Message]:
        """Messages up to and including the first of type ``kind``; an 'E' before it fails the test
        unless ``errors``."""
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while True:
            msg = self.message(max(0.01, deadline - time.monotonic()))
            assert msg is not None, f"connection closed before {kind!r}; got {out!r}"
            out.append(msg)
            if msg[0] == kind:
                return out
            assert errors or msg[0] != b"E", f"unexpected error: {fields(msg[1])}"

    def rest(self, timeout: float = IO_TIMEOUT) -> list[Message]:
        """Every message until the gateway closes the connection (which must happen before ``timeout``)."""
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while (msg := self.message(max(0.01, deadline - time.monotonic()))) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def connect_plain(gw: Gateway) -> Wire:
    return Wire(socket.create_connection(("127.0.0.1", gw.port()), timeout=IO_TIMEOUT))


def connect_tls(gw: Gateway) -> Wire:
    """TCP, SSLRequest, 'S', TLS handshake (certificate not verified: the gateway's is self-signed)."""
    sock = socket.create_connection(("127.0.0.1", gw.port()), timeout=IO_TIMEOUT)
    try:
        sock.sendall(SSL_REQUEST)
        answer = sock.recv(1)
        assert answer == b"S", f"SSLRequest answered with {answer!r}"
        tls = client_tls().wrap_socket(sock)
    except BaseException:
        sock.close()
        raise
    return Wire(tls)


@dataclass
class Login:
    """A by-hand authenticated session: the socket, BackendKeyData, and what came before ReadyForQuery."""

    wire: Wire
    process_id: int
    secret: bytes
    messages: list[Message] = field(default_factory=list)


def login(
    gw: Gateway,
    *,
    version: tuple[int, int] = (3, 0),
    extra: Sequence[tuple[str, str]] = (),
    app: str = "adversity",
) -> Login:
    """SSLRequest, StartupMessage, AuthenticationCleartextPassword answered with a token, ReadyForQuery."""
    token = gw.token("mallory", ["dev"])
    wire = connect_tls(gw)
    try:
        wire.send(
            startup_packet(
                [("user", "mallory"), ("database", "bank"), ("application_name", app), *extra], version
            )
        )
        seen: list[Message] = []
        while True:
            msg = wire.message(10.0)
            assert msg is not None, f"gateway closed the connection during login after {seen!r}"
            seen.append(msg)
            kind, body = msg
            assert kind != b"E", f"login refused: {fields(body)}"
            if kind == b"R" and struct.unpack("!i", body[:4])[0] == 3:
                wire.send(typed(b"p", token.encode() + b"\0"))
            if kind == b"Z":
                break
        keys = [body for kind, body in seen if kind == b"K"]
        assert len(keys) == 1, seen
        (pid,) = struct.unpack("!i", keys[0][:4])
        return Login(wire, pid, keys[0][4:], seen)
    except BaseException:
        wire.close()
        raise


def assert_error_response(messages: list[Message], sqlstate: str | None = None) -> dict[str, str]:
    """The messages hold a real ErrorResponse with severity, SQLSTATE and message; return its fields."""
    errors = [fields(body) for kind, body in messages if kind == b"E"]
    assert errors, f"no ErrorResponse in {messages!r}"
    err = errors[0]
    assert err.get("S") in ("ERROR", "FATAL", "PANIC"), err
    assert len(err.get("C", "")) == 5, err
    assert err.get("M"), err
    if sqlstate is not None:
        assert err["C"] == sqlstate, err
    return err


def assert_gateway_healthy(gw: Gateway) -> None:
    """The gateway process lives, an ordinary psql session works, and no session crashed with a traceback."""
    assert gw.running, gw.log_tail()
    res = gw.psql("SELECT 'still serving'")
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout.strip() == "still serving"
    assert "session failed" not in gw.log_text(), gw.log_tail()


@pytest.fixture(scope="module")
def gw(module_gateway: Gateway) -> Gateway:
    return module_gateway


def backend_state(admin: Admin, pid: int) -> tuple[str, str] | None:
    """(state, query) of upstream backend ``pid``, or None when it is gone."""
    row = admin.execute(
        "SELECT coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll ``pred()`` (bounded); return the seconds it took."""
    start = time.monotonic()
    while not pred():
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def wait_sleeping(admin: Admin, pid: int) -> None:
    def sleeping() -> bool:
        st = backend_state(admin, pid)
        return st is not None and st[0] == "active" and "pg_sleep" in st[1]

    wait_for(f"backend {pid} to run pg_sleep", sleeping)


# ------------------------------------------------------------------------------------------ startup phase
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: hoopgw\r\n\r\n", id="http-request"),
        pytest.param(b"\xff" * 16, id="negative-length"),
        pytest.param(b"\x00\x00\x00\x02\x00\x03", id="too-short-length"),
        pytest.param(b"\x00\x00\x00\x00" + bytes(range(60)), id="zero-length"),
        pytest.param(b"\x00\x00\x00\x10\x00\x03\x00\x00user\0\0\xfe\xfe", id="malformed-params"),
    ],
)
def test_garbage_instead_of_a_startup_packet(gw: Gateway, garbage: bytes) -> None:
    wire = connect_plain(gw)
    try:
        wire.send(garbage)
        messages = wire.rest()
    finally:
        wire.close()
    assert_error_response(messages, "08P01")
    assert [kind for kind, _ in messages] == [b"E"]
    assert_gateway_healthy(gw)


def test_truncated_startup_then_close(gw: Gateway) -> None:
    packet = startup_packet([("user", "alice"), ("database", "bank")])
    wire = connect_plain(gw)
    try:
        wire.send(packet[: len(packet) // 2])
        wire.sock.shutdown(socket.SHUT_WR)
        # The gateway notices the EOF and closes its side at once (well before the login timeout).
        start = time.monotonic()
        assert wire.rest(timeout=5.0) == []
        assert time.monotonic() - start < 5.0
    finally:
        wire.close()
    # A truncated packet and an abrupt close (RST) on a fresh connection.
    sock = socket.create_connection(("127.0.0.1", gw.port()), timeout=IO_TIMEOUT)
    sock.sendall(packet[:7])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert_gateway_healthy(gw)


def test_oversized_startup_length_is_refused_without_waiting(gw: Gateway) -> None:
    wire = connect_plain(gw)
    try:
        start = time.monotonic()
        wire.send(struct.pack("!ihh", 0x7FFF_FFFF, 3, 0) + b"user\0alice\0")
        messages = wire.rest()
        elapsed = time.monotonic() - start
    finally:
        wire.close()
    err = assert_error_response(messages, "08P01")
    assert "2147483647" in err["M"], err
    assert elapsed < 3.0
    assert_gateway_healthy(gw)


@pytest.mark.parametrize(
    ("version", "shown"),
    [((2, 0), "2.0"), ((1234, 5681), "1234.5681"), ((4, 0), "4.0")],
)
def test_wrong_protocol_version_gets_a_clear_error(gw: Gateway, version: tuple[int, int], shown: str) -> None:
    wire = connect_plain(gw)
    try:
        wire.send(startup_packet([("user", "alice"), ("database", "bank")], version))
        messages = wire.rest()
    finally:
        wire.close()
    err = assert_error_response(messages)
    assert "unsupported" in err["M"] and shown in err["M"], err
    assert_gateway_healthy(gw)


def test_ssl_request_code_with_parameters_is_an_error(gw: Gateway) -> None:
    """Protocol number 1234.5679 is the SSLRequest code: with parameters after it, the packet is malformed."""
    wire = connect_plain(gw)
    try:
        wire.send(startup_packet([("user", "alice")], (1234, 5679)))
        head = wire.raw(1)
        assert head != b"S", "a malformed SSLRequest must not start TLS"
        wire.buf = head + wire.buf
        messages = wire.rest()
    finally:
        wire.close()
    assert_error_response(messages, "08P01")
    assert_gateway_healthy(gw)


def test_unknown_cancel_key_is_ignored(gw: Gateway, admin: Admin) -> None:
    # A random key on its own: the gateway answers nothing and closes (PostgreSQL does the same).
    for pid in (1, 0x7FFF_FFFF, -5):
        wire = connect_plain(gw)
        try:
            wire.send(cancel_packet(pid, secrets.token_bytes(4)))
            assert wire.rest() == []
        finally:
            wire.close()
    # The REAL backend pid of a running query with a wrong secret, in cleartext and inside TLS: not cancelled.
    with psycopg.connect(gw.conninfo(application_name="wrong-cancel-key"), autocommit=True) as conn:
        pid = conn.info.backend_pid
        result: list[object] = []

        def run() -> None:
            try:
                result.append(conn.execute("SELECT pg_sleep(2.5), 'finished'").fetchone())
            except Exception as exc:
                result.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        try:
            wait_sleeping(admin, pid)
            plain = connect_plain(gw)
            try:
                plain.send(cancel_packet(pid, secrets.token_bytes(4)))
                assert plain.rest() == []
            finally:
                plain.close()
            tls = connect_tls(gw)
            try:
                tls.send(cancel_packet(pid, secrets.token_bytes(4)))
                assert tls.rest() == []
            finally:
                tls.close()
        finally:
            worker.join(10)
        assert not worker.is_alive()
        assert len(result) == 1 and isinstance(result[0], tuple), result
        assert result[0][1] == "finished"
    assert_gateway_healthy(gw)


def test_raw_cancel_with_the_right_key_cancels(gw: Gateway, admin: Admin) -> None:
    """Control for the test above: the key from BackendKeyData does cancel, over cleartext and over TLS."""
    for over_tls in (False, True):
        session = login(gw, app="raw-cancel")
        try:
            session.wire.send(query("SELECT pg_sleep(30)"))
            wait_sleeping(admin, session.process_id)
            start = time.monotonic()
            canceller = connect_tls(gw) if over_tls else connect_plain(gw)
            try:
                canceller.send(cancel_packet(session.process_id, session.secret))
                assert canceller.rest() == []
            finally:
                canceller.close()
            answer = session.wire.until(b"Z", timeout=10.0, errors=True)
            assert time.monotonic() - start < 5.0
            assert_error_response(answer, "57014")
            session.wire.send(query("SELECT 'after cancel'"))
            after = session.wire.until(b"Z")
            rows = [body for kind, body in after if kind == b"D"]
            assert len(rows) == 1 and b"after cancel" in rows[0]
            session.wire.send(typed(b"X"))
        finally:
            session.wire.close()
    assert_gateway_healthy(gw)


# ------------------------------------------------------------------------------------------ after login
def test_negotiate_protocol_version_for_newer_minor_and_pq_options(gw: Gateway) -> None:
    session = login(gw, version=(3, 2), extra=[("_pq_.foo", "bar"), ("_pq_.compression", "on")])
    try:
        kinds = [kind for kind, _ in session.messages]
        assert b"v" in kinds, kinds
        first_auth = kinds.index(b"R")
        assert kinds.index(b"v") < first_auth, (
            f"NegotiateProtocolVersion must precede authentication: {kinds}"
        )
        body = next(body for kind, body in session.messages if kind == b"v")
        newest_minor, count = struct.unpack("!ii", body[:8])
        names = [n.decode() for n in body[8:].split(b"\0")[:count]]
        assert newest_minor < 2
        assert count == 2 and sorted(names) == ["_pq_.compression", "_pq_.foo"], body
        # Protocol 3.0 semantics from here on: a 4-byte cancel key, and the session works.
        assert len(session.secret) == 4
        session.wire.send(query("SELECT 'negotiated'"))
        rows = [body for kind, body in session.wire.until(b"Z") if kind == b"D"]
        assert len(rows) == 1 and b"negotiated" in rows[0]
        session.wire.send(typed(b"X"))
        assert session.wire.rest() == []
    finally:
        session.wire.close()
    # A newer minor alone is negotiated too, with an empty option list.
    session = login(gw, version=(3, 1))
    try:
        body = next(body for kind, body in session.messages if kind == b"v")
        assert struct.unpack("!ii", body[:8]) == (0, 0)
    finally:
        session.wire.close()
    assert_gateway_healthy(gw)


def test_oversized_typed_message_after_login(gw: Gateway, admin: Admin) -> None:
    session = login(gw, app="oversized")
    try:
        assert backend_state(admin, session.process_id) is not None
        start = time.monotonic()
        session.wire.send(b"Q" + struct.pack("!i", 0x7FFF_FFF0) + b"SELECT 1")
        messages = session.wire.rest()
        assert time.monotonic() - start < 3.0
    finally:
        session.wire.close()
    err = assert_error_response(messages, "08P01")
    assert "exceeds" in err["M"], err
    # The upstream session of the broken client is gone too.
    wait_for("the upstream backend to end", lambda: backend_state(admin, session.process_id) is None, 10.0)
    assert_gateway_healthy(gw)


@pytest.mark.parametrize("kind", [b"z", b"\x00", b"p", b"A"])
def test_unknown_frontend_message_type_after_login(gw: Gateway, admin: Admin, kind: bytes) -> None:
    session = login(gw, app="unknown-type")
    try:
        session.wire.send(typed(kind, b"junk"))
        messages = session.wire.rest()
    finally:
        session.wire.close()
    assert_error_response(messages, "08P01")
    wait_for("the upstream backend to end", lambda: backend_state(admin, session.process_id) is None, 10.0)
    assert_gateway_healthy(gw)


def test_truncated_typed_message_then_close(gw: Gateway, admin: Admin) -> None:
    session = login(gw, app="truncated-typed")
    try:
        session.wire.send(query("SELECT 'never complete'")[:9])
        session.wire.sock.shutdown(socket.SHUT_WR)
        assert session.wire.rest() == []
    finally:
        session.wire.close()
    wait_for("the upstream backend to end", lambda: backend_state(admin, session.process_id) is None, 10.0)
    assert_gateway_healthy(gw)


# ------------------------------------------------------------------------------------------ dying peers
def test_upstream_death_mid_query(gw: Gateway, admin: Admin) -> None:
    bystander = psycopg.connect(gw.conninfo(application_name="bystander"), autocommit=True)
    try:
        with psycopg.connect(gw.conninfo(application_name="victim"), autocommit=True) as conn:
            pid = conn.info.backend_pid
            outcome: list[BaseException | None] = []
            ended: list[float] = []

            def run() -> None:
                try:
                    conn.execute("SELECT pg_sleep(30)")
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)
                ended.append(time.monotonic())

            worker = threading.Thread(target=run)
            worker.start()
            try:
                wait_sleeping(admin, pid)
                killed_at = time.monotonic()
                row = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
                assert row == (True,)
            finally:
                worker.join(15)
            assert not worker.is_alive()
            assert len(outcome) == 1 and isinstance(outcome[0], psycopg.OperationalError), outcome
            assert ended[0] - killed_at < 5.0
            assert conn.closed or conn.broken
        # The gateway keeps serving: the session opened before, and a new client.
        assert bystander.execute("SELECT 'bystander ok'").fetchone() == ("bystander ok",)
        with psycopg.connect(gw.conninfo(application_name="after-death"), autocommit=True) as fresh:
            assert fresh.execute("SELECT 1").fetchone() == (1,)
    finally:
        bystander.close()
    assert_gateway_healthy(gw)


def test_client_disconnect_mid_query_ends_the_upstream_query(gw: Gateway, admin: Admin) -> None:
    session = login(gw, app="vanishing-client")
    try:
        session.wire.send(query("SELECT pg_sleep(30)"))
        wait_sleeping(admin, session.process_id)
    finally:
        session.wire.close()
    # PostgreSQL itself would only notice the vanished client when pg_sleep(30) ends.
    wait_for(
        f"upstream backend {session.process_id} to go away after the client vanished",
        lambda: backend_state(admin, session.process_id) is None,
        timeout=8.0,
    )
    assert_gateway_healthy(gw)


def test_broken_client_mid_query_ends_the_upstream_query(gw: Gateway, admin: Admin) -> None:
    session = login(gw, app="broken-client")
    try:
        session.wire.send(query("SELECT pg_sleep(30)"))
        wait_sleeping(admin, session.process_id)
        session.wire.send(typed(b"z", b"junk"))
        assert_error_response(session.wire.rest(), "08P01")
    finally:
        session.wire.close()
    wait_for(
        f"upstream backend {session.process_id} to go away after the client was dropped",
        lambda: backend_state(admin, session.process_id) is None,
        timeout=8.0,
    )
    assert_gateway_healthy(gw)
