"""Connecting to the upstream PostgreSQL server with the brokered credential.

Handles TLS (libpq sslmode semantics), and the server's choice of trust, cleartext, md5 or SCRAM-SHA-256
authentication. The client never sees the password, and no error message carries it.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import scramp

from hoopgw import _core
from hoopgw.errors import PgProtocolError, SecretError, UpstreamError
from hoopgw.proxy._conn import Conn, ConnectionClosed
from hoopgw.proxy._tls import upstream_context

if TYPE_CHECKING:
    from hoopgw.config import PostgresConnection

_AUTH_OK = 0
_AUTH_CLEARTEXT = 3
_AUTH_MD5 = 5
_AUTH_SASL = 10
_AUTH_SASL_CONTINUE = 11
_AUTH_SASL_FINAL = 12
_AUTH_NAMES = {2: "Kerberos V5", 6: "SCM credentials", 7: "GSSAPI", 8: "GSSAPI", 9: "SSPI"}


class UpstreamRefused(UpstreamError):
    """The upstream answered the startup with an ErrorResponse; ``fields`` are its fields."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.sqlstate = fields.get("C", "08004")
        super().__init__(fields.get("M", "upstream refused the connection"))


@dataclass
class Upstream:
    """An authenticated upstream session, ready for the relay."""

    conn: Conn
    process_id: int
    secret_key: bytes
    #: ParameterStatus messages as sent by the server (already framed), to replay to the client
    parameter_status: list[bytes]
    parameters: dict[str, str]
    tx_status: str
    host: str
    port: int
    tls: bool


@dataclass(frozen=True)
class CancelTarget:
    """Where and how to send a CancelRequest for one upstream backend."""

    host: str
    port: int
    process_id: int
    secret_key: bytes


async def _read_message(conn: Conn, framer: _core.Framer) -> tuple[int, bytes]:
    while True:
        msg = framer.next_message()
        if msg is not None:
            return msg
        framer.feed(await conn.read())


async def _open(cfg: PostgresConnection) -> Conn:
    up = cfg.upstream
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(Conn, up.host, up.port), timeout=up.connect_timeout
        )
    except TimeoutError as exc:
        raise UpstreamError(f"connection to {up.host}:{up.port} timed out") from exc
    except OSError as exc:
        raise UpstreamError(f"cannot connect to {up.host}:{up.port}: {exc.strerror or exc}") from exc
    return conn


async def _negotiate_tls(conn: Conn, cfg: PostgresConnection) -> bool:
    up = cfg.upstream
    ctx = upstream_context(up.sslmode, up.sslrootcert)
    if ctx is None or up.sslmode == "allow":
        return False
    conn.write(_core.encode_ssl_request())
    answer = await conn.read()
    if answer[:1] == b"S" and len(answer) == 1:
        try:
            await conn.start_tls(ctx, server_side=False, server_hostname=up.host)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise UpstreamError(f"TLS handshake with {up.host}:{up.port} failed: {exc}") from exc
        return True
    if answer[:1] == b"N" and len(answer) == 1:
        if up.sslmode in ("require", "verify-ca", "verify-full"):
            raise UpstreamError(f"upstream {up.host}:{up.port} does not support TLS (sslmode={up.sslmode})")
        return False
    raise UpstreamError(f"upstream {up.host}:{up.port} sent an invalid answer to SSLRequest")


def _password(cfg: PostgresConnection) -> str:
    if cfg.password is None:
        raise UpstreamError(
            f"upstream asks for a password but connection {cfg.name!r} has no password configured"
        )
    try:
        return cfg.password.resolve()
    except SecretError as exc:
        raise UpstreamError(f"connection {cfg.name!r}: {exc}") from exc


async def _authenticate(conn: Conn, framer: _core.Framer, cfg: PostgresConnection) -> None:
    scram: scramp.ScramClient | None = None
    user = cfg.upstream.user
    while True:
        kind, body = await _read_message(conn, framer)
        if kind == ord("E"):
            raise UpstreamRefused(_core.decode_fields(body))
        if kind != ord("R"):
            raise UpstreamError(f"unexpected message {chr(kind)!r} from upstream during authentication")
        code, data = _core.decode_authentication(body)
        if code == _AUTH_OK:
            return
        if code == _AUTH_CLEARTEXT:
            conn.write(_core.encode_password(_password(cfg).encode() + b"\0"))
        elif code == _AUTH_MD5:
            inner = hashlib.md5((_password(cfg) + user).encode(), usedforsecurity=False).hexdigest()
            outer = hashlib.md5(inner.encode() + data[:4], usedforsecurity=False).hexdigest()
            conn.write(_core.encode_password(b"md5" + outer.encode() + b"\0"))
        elif code == _AUTH_SASL:
            mechanisms = [m.decode() for m in data.split(b"\0") if m]
            if "SCRAM-SHA-256" not in mechanisms:
                raise UpstreamError(f"upstream offers no supported SASL mechanism ({', '.join(mechanisms)})")
            scram = scramp.ScramClient(["SCRAM-SHA-256"], user, _password(cfg))
            first = scram.get_client_first().encode()
            conn.write(_core.encode_sasl_initial_response("SCRAM-SHA-256", first))
        elif code == _AUTH_SASL_CONTINUE and scram is not None:
            try:
                scram.set_server_first(data.decode())
            except scramp.ScramException as exc:
                raise UpstreamError(f"SCRAM exchange with upstream failed: {exc}") from exc
            conn.write(_core.encode_password(scram.get_client_final().encode()))
        elif code == _AUTH_SASL_FINAL and scram is not None:
            try:
                scram.set_server_final(data.decode())
            except scramp.ScramException as exc:
                raise UpstreamError(f"upstream failed SCRAM server verification: {exc}") from exc
        else:
            name = _AUTH_NAMES.get(code, f"code {code}")
            raise UpstreamError(f"upstream asks for unsupported authentication ({name})")


async def _read_until_ready(
    conn: Conn, framer: _core.Framer
) -> tuple[int, bytes, list[bytes], dict[str, str], str]:
    """Collect ParameterStatus and BackendKeyData up to ReadyForQuery after AuthenticationOk."""
    statuses: list[bytes] = []
    parameters: dict[str, str] = {}
    process_id, secret_key = 0, b""
    while True:
        kind, body = await _read_message(conn, framer)
        if kind == ord("S"):
            statuses.append(_core.encode_message(kind, body))
            name, value = _core.decode_parameter_status(body)
            parameters[name] = value
        elif kind == ord("K"):
            process_id, secret_key = _core.decode_backend_key_data(body)
        elif kind == ord("Z"):
            tx_status = _core.decode_ready_for_query(body)
            break
        elif kind == ord("E"):
            raise UpstreamRefused(_core.decode_fields(body))
        elif kind not in (ord("N"), ord("v")):
            raise UpstreamError(f"unexpected message {chr(kind)!r} from upstream during startup")
    if framer.buffered:
        raise UpstreamError("upstream sent data after ReadyForQuery before any query")
    return process_id, secret_key, statuses, parameters, tx_status


async def connect_upstream(cfg: PostgresConnection, settings: list[tuple[str, str]]) -> Upstream:
    """Open, secure and authenticate an upstream session; raise UpstreamError with a clear reason."""
    up = cfg.upstream
    conn = await _open(cfg)
    try:
        tls = await _negotiate_tls(conn, cfg)
        params = [("user", up.user), ("database", up.database), *settings]
        conn.write(_core.encode_startup_message(params))
        framer = _core.Framer()
        await _authenticate(conn, framer, cfg)
        ready = await _read_until_ready(conn, framer)
    except ConnectionClosed as exc:
        conn.close()
        raise UpstreamError(f"upstream {up.host}:{up.port} closed the connection during startup") from exc
    except PgProtocolError as exc:
        conn.close()
        raise UpstreamError(f"upstream {up.host}:{up.port} broke the protocol during startup: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return Upstream(conn, *ready, host=up.host, port=up.port, tls=tls)


async def send_cancel(target: CancelTarget, within: float = 5.0) -> None:
    """Deliver a CancelRequest with the real backend key (the server answers nothing and closes)."""
    loop = asyncio.get_running_loop()
    try:
        transport, conn = await asyncio.wait_for(
            loop.create_connection(Conn, target.host, target.port), timeout=within
        )
    except (OSError, TimeoutError):
        return
    transport.write(_core.encode_cancel_request(target.process_id, target.secret_key))
    try:
        await asyncio.wait_for(conn.read(), timeout=within)
    except (ConnectionClosed, TimeoutError):
        pass
    finally:
        conn.close()
