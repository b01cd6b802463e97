"""One client session of the PostgreSQL listener: handshake, authentication, then the relay.

Handshake (awaits, off the hot path): startup packet, SSLRequest/GSSENCRequest/CancelRequest, TLS, the
client's token as a cleartext password over TLS, the brokered upstream connection, and the replay of the
upstream's ParameterStatus/BackendKeyData/ReadyForQuery. Relay (the hot path): every socket read goes
to the Rust session state machine once, the complete frames go to the other side, and completed
statements go to the audit writer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from hoopgw import _core
from hoopgw.audit import SessionInfo
from hoopgw.audit._prompt import session_prompt
from hoopgw.errors import AuthError, PgProtocolError, UpstreamError
from hoopgw.proxy._conn import Conn, ConnectionClosed
from hoopgw.proxy.pg._catalog import CatalogError
from hoopgw.proxy.pg._hold import HeldStatements
from hoopgw.proxy.pg._policy import StatementGuard
from hoopgw.proxy.pg._startup import StartupRefused, StartupRequest, validate_startup
from hoopgw.proxy.pg._upstream import CancelTarget, Upstream, UpstreamRefused, connect_upstream, send_cancel
from hoopgw.proxy.pg._wal import CONTAINED_MASK, WRITE_AHEAD_MASK, WriteAhead

if TYPE_CHECKING:
    from hoopgw.identity import Principal
    from hoopgw.proxy.pg._listener import PgListener
    from hoopgw.server import Gateway

log = logging.getLogger("hoopgw.pg")

_AUTH_CLEARTEXT = 3
_PASSWORD_MAX = 64 * 1024
_TERMINATE = b"X\x00\x00\x00\x04"


class _Refuse(Exception):
    def __init__(
        self, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.sqlstate, self.message, self.detail, self.hint = sqlstate, message, detail, hint


class PgClientSession:
    """A client connection on a postgres listener, from accept to close."""

    def __init__(self, listener: PgListener, conn: Conn) -> None:
        self.listener = listener
        self.client = conn
        self.upstream: Upstream | None = None
        self.state: _core.PgSession | None = None
        self.session_id: str | None = None
        self.principal: Principal | None = None
        self._cancel_key: tuple[int, bytes] | None = None
        self._done = asyncio.get_running_loop().create_future()
        self._draining = False
        self._close_reason: str | None = None
        self._last_activity = time.monotonic()
        #: client bytes received in the relay (while a statement is held, all of them are kept)
        self.client_bytes = 0
        self._idle_handle: asyncio.TimerHandle | None = None
        #: set when the client vanished while the upstream was still working on its requests
        self._orphan_cancel: CancelTarget | None = None
        self._catalog_task: asyncio.Task[None] | None = None
        #: statement policy of this session (None until authenticated)
        self.guard: StatementGuard | None = None
        #: statements held for approval
        self.holds = HeldStatements(self)
        #: the client's application_name at startup (may carry a prompt tag: hoop:prompt=<id>)
        self.application_name: str | None = None
        #: the prompt tag of application_name: every event of the session carries it, unless a
        #: statement names its own in a leading comment (recorded as given: docs/PROMPTS.md)
        self.prompt_id: str | None = None
        #: write-ahead audit: client bytes waiting for their statements to be durable (None: off)
        self.wal: WriteAhead | None = None
        peer = conn.transport.get_extra_info("peername") if conn.transport else None
        self.client_addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it closes."""
        gw = self.listener.gateway
        try:
            try:
                ready = await asyncio.wait_for(self._handshake(), timeout=gw.config.gateway.login_timeout)
            except TimeoutError:
                self._refuse("08006", "login timeout: the client did not complete authentication in time")
                return
            except _Refuse as r:
                self._refuse(r.sqlstate, r.message, r.detail, r.hint)
                return
            except PgProtocolError as exc:
                self._refuse("08P01", f"invalid startup: {exc}")
                gw.writer.event(
                    self.session_id, "protocol_error", {"phase": "startup", "error": str(exc)}, self.prompt_id
                )
                return
            except ConnectionClosed:
                return
            if not ready:
                return
            self._start_relay()
            await self._done
            if self._orphan_cancel is not None:
                # A backend busy with a query does not read its socket, so Terminate and the closed
                # connection go unnoticed until the query ends: cancel it with the real key.
                await send_cancel(self._orphan_cancel)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self.guard is not None:
            self.guard.stop()
        if self._cancel_key is not None:
            self.listener.cancels.unregister(*self._cancel_key)
            self._cancel_key = None
        if self.upstream is not None:
            self.upstream.conn.close()
        self.client.close()
        if self._catalog_task is not None:
            self._catalog_task.cancel()
        if self.session_id is not None:
            masked = self.state.mask_counts if self.state is not None else None
            self.listener.gateway.writer.session_close(self.session_id, self._close_reason, masked)
            self.session_id = None

    @property
    def gateway(self) -> Gateway:
        return self.listener.gateway

    @property
    def draining(self) -> bool:
        """True once the gateway asked this session to close at its next idle point."""
        return self._draining

    @property
    def closed(self) -> bool:
        """True once the session is ending (the client is or will be closed)."""
        return self._done.done()

    def _finish(self, reason: str | None) -> None:
        if self._close_reason is None:
            self._close_reason = reason
        if not self._done.done():
            self._done.set_result(None)
            self.holds.session_ended(reason or "the session ended")

    def _refuse(
        self, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
    ) -> None:
        """Send a FATAL ErrorResponse to the client and end the session."""
        self.client.write(_core.encode_error("FATAL", sqlstate, message, detail, hint))
        self.client.close()
        self._finish(f"{sqlstate}: {message}")

    # -- handshake ------------------------------------------------------------------------------
    async def _handshake(self) -> bool:
        gw = self.listener.gateway
        packet, leftover = await self._read_startup()
        if packet is None:
            return False
        try:
            request = validate_startup(packet.protocol, packet.params)
        except StartupRefused as r:
            raise _Refuse(r.sqlstate, r.message, hint=r.hint) from None
        if request.protocol_minor > 0 or request.unsupported_options:
            self.client.write(_core.encode_negotiate_protocol_version(0, list(request.unsupported_options)))
        if not self.client.is_tls:
            raise _Refuse(
                "28000",
                "hoopgw accepts credentials only over TLS",
                hint="connect with sslmode=require (the token or API key is sent as the password)",
            )
        self._check_database(request)
        principal = await self._authenticate(request, leftover)
        self.principal = principal
        self.application_name = request.get("application_name")
        self.prompt_id = session_prompt(self.application_name)
        conn_cfg = self.listener.cfg
        guard = StatementGuard(self, principal)
        refused = guard.access_refusal()
        if refused is not None:
            gw.writer.event(
                None,
                "access_denied",
                {"connection": conn_cfg.name, "subject": principal.subject, "client_addr": self.client_addr,
                 "reason": refused},
            )  # fmt: skip
            raise _Refuse("42501", refused)
        self.guard = guard
        self.session_id = gw.writer.new_session_id()
        gw.writer.session_open(
            SessionInfo(
                id=self.session_id,
                type="postgres",
                connection=conn_cfg.name,
                subject=principal.subject,
                groups=sorted(principal.groups),
                client_addr=self.client_addr,
                auth=principal.auth,
                params={
                    "user": request.user,
                    "database": request.database or conn_cfg.upstream.database,
                    "application_name": request.get("application_name") or "",
                    **({"prompt_id": self.prompt_id} if self.prompt_id is not None else {}),
                },
            )
        )
        log.info(
            "session open",
            extra={"session": self.session_id, "subject": principal.subject, "connection": conn_cfg.name},
        )
        try:
            upstream = await connect_upstream(conn_cfg, guard.upstream_settings(request.settings))
        except UpstreamRefused as exc:
            raise _Refuse(exc.sqlstate, f"upstream {conn_cfg.name!r} refused the session: {exc}") from None
        except UpstreamError as exc:
            raise _Refuse("08001", f"cannot reach upstream {conn_cfg.name!r}", detail=str(exc)) from None
        self.upstream = upstream
        refused = guard.upstream_refusal(upstream.parameters)
        if refused is not None:
            raise _Refuse("42501", refused)
        secret = self.listener.cancels.register(
            CancelTarget(upstream.host, upstream.port, upstream.process_id, upstream.secret_key)
        )
        self._cancel_key = (upstream.process_id, secret)
        out = [_core.encode_authentication(0), *upstream.parameter_status]
        out.append(_core.encode_backend_key_data(upstream.process_id, secret))
        out.append(_core.encode_ready_for_query(upstream.tx_status))
        self.client.write(b"".join(out))
        return True

    async def _read_startup(self) -> tuple[_core.StartupPacket | None, bytes]:
        buf = b""
        while True:
            used, packet = _core.decode_startup(buf)
            if packet is None:
                buf += await self.client.read()
                continue
            buf = buf[used:]
            if packet.kind == "ssl":
                if buf:
                    raise _Refuse("08P01", "received unencrypted data after SSL request")
                self.client.write(b"S")
                await self.client.start_tls(self.listener.gateway.server_tls, server_side=True)
            elif packet.kind == "gssenc":
                if buf:
                    raise _Refuse("08P01", "received unencrypted data after GSSAPI encryption request")
                self.client.write(b"N")
            elif packet.kind == "cancel":
                await self._forward_cancel(packet)
                return None, b""
            else:
                return packet, buf

    async def _forward_cancel(self, packet: _core.StartupPacket) -> None:
        target = self.listener.cancels.lookup(packet.process_id, packet.secret_key)
        self.client.close()
        self._finish(None)
        if target is None:
            log.info("cancel request with unknown key ignored", extra={"client": self.client_addr})
            return
        key = (packet.process_id, packet.secret_key)
        for other in list(self.listener.sessions):
            if other._cancel_key == key and other.holds.cancel():
                return  # the statement was held here, never sent: nothing runs upstream
        await send_cancel(target)
        self.listener.gateway.writer.event(
            None, "cancel", {"connection": self.listener.cfg.name, "backend_pid": target.process_id}
        )

    def _check_database(self, request: StartupRequest) -> None:
        wanted = request.database
        configured = self.listener.cfg.upstream.database
        if wanted is None or wanted in (configured, request.user):
            return
        raise _Refuse(
            "3D000",
            f'database "{wanted}" is not available through connection "{self.listener.cfg.name}"',
            hint=f"use dbname={configured}",
        )

    async def _authenticate(self, request: StartupRequest, leftover: bytes) -> Principal:
        gw = self.listener.gateway
        if leftover:
            raise _Refuse("08P01", "unexpected data after the startup packet")
        self.client.write(_core.encode_authentication(_AUTH_CLEARTEXT))
        framer = _core.Framer(_PASSWORD_MAX)
        while (msg := framer.next_message()) is None:
            framer.feed(await self.client.read())
        kind, body = msg
        if kind != ord("p"):
            raise _Refuse("08P01", f"expected password response, got message type {chr(kind)!r}")
        if framer.buffered:
            raise _Refuse("08P01", "unexpected data after the password message")
        secret = _core.decode_password(body).decode("utf-8", errors="replace")
        try:
            return await gw.authenticator.authenticate(secret)
        except AuthError as exc:
            gw.writer.event(
                None,
                "auth_failed",
                {
                    "connection": self.listener.cfg.name,
                    "user": request.user,
                    "client_addr": self.client_addr,
                    "reason": str(exc),
                },
            )
            log.info("authentication failed", extra={"client": self.client_addr, "reason": str(exc)})
            raise _Refuse(
                "28P01", f'password authentication failed for user "{request.user}"', detail=str(exc)
            ) from None

    # -- relay ----------------------------------------------------------------------------------
    def _start_relay(self) -> None:
        assert self.upstream is not None
        gw = self.listener.gateway
        self.state = _core.PgSession(gw.config.gateway.max_message_size, self.listener.masker)
        assert self.guard is not None
        self.guard.start(self.state)
        self.state.set_param_guard(self.guard.parameter_guard(self.upstream.parameters))
        self.state.set_preview(gw.config.audit.preview_rows, gw.config.audit.preview_chars)
        if gw.config.audit.write_ahead:
            self.state.set_write_ahead(WRITE_AHEAD_MASK, CONTAINED_MASK)
            self.wal = WriteAhead(self)
        up = self.upstream.conn
        up.relay(self.client, self._on_server_data, self._on_server_lost)
        self.client.relay(up, self._on_client_data, self._on_client_lost)
        idle = gw.config.gateway.idle_timeout
        if idle:
            self._idle_handle = asyncio.get_running_loop().call_later(idle, self._check_idle)
        if self._draining:
            self._maybe_drain()

    def _on_client_data(self, data: bytes) -> None:
        state = self.state
        assert state is not None and self.upstream is not None
        self._last_activity = time.monotonic()
        self.client_bytes += len(data)
        try:
            forward, terminate, reply = state.feed_client(data, time.monotonic_ns())
        except PgProtocolError as exc:
            self._protocol_error("client", exc)
            return
        self.apply(forward, terminate, reply)

    def apply(self, forward: bytes, terminate: bool, reply: bytes | None) -> None:
        """Act on what the core made of client bytes (a read, or held bytes released or rejected)."""
        assert self.upstream is not None
        wal = self.wal
        if wal is not None and wal.take(forward, terminate):
            if reply:
                self.client.write(reply)
            state = self.state
            if state is not None and state.holding:
                self.holds.poke()
            return
        if forward:
            self.upstream.conn.write(forward)
        if reply:
            self.client.write(reply)
        if terminate:
            self.upstream.conn.close()
            self.client.close()
            self._finish("client terminated")
            return
        state = self.state
        if state is not None and state.holding:
            self.holds.poke()
        elif self._draining:
            self._maybe_drain()

    def wal_flushed(self) -> None:
        """Every byte that waited for write-ahead intents went upstream."""
        if self._draining:
            self._maybe_drain()

    def _on_server_data(self, data: bytes) -> None:
        state = self.state
        assert state is not None
        try:
            forward, done = state.feed_server(data, time.monotonic_ns())
        except PgProtocolError as exc:
            self._protocol_error("server", exc)
            return
        if forward:
            self.client.write(forward)
        if state.tripped is not None:
            self._guard_tripped(state.tripped)
            return
        if state.catalog_request is not None and self._catalog_task is None:
            self._start_catalog_lookup()
        if done is not None:
            writer = self.listener.gateway.writer
            sid = self.session_id
            assert sid is not None
            tag = self.prompt_id
            for statement in done:
                writer.statement(sid, statement, tag)  # a statement's own tag: read by the writer
        if self._draining:
            self._maybe_drain()

    # -- masking catalog look-ups -------------------------------------------------------------------
    def _start_catalog_lookup(self) -> None:
        """The core paused the server stream for names: stop reading, look them up, resume."""
        assert self.upstream is not None
        self.upstream.conn.reading_held = True
        transport = self.upstream.conn.transport
        if transport is not None:
            transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._catalog_lookup())
        self._catalog_task = task

    async def _catalog_lookup(self) -> None:
        state, up = self.state, self.upstream
        assert state is not None and up is not None
        side = self.listener.catalog
        try:
            while (request := state.catalog_request) is not None:
                tables, types, copy_sql = request
                copy = None
                if copy_sql is not None:
                    copy = await side.describe_copy(*copy_sql)
                    tables = sorted({f[0] for f in copy[6] if f[0]})
                    types = sorted({f[2] for f in copy[6]})
                table_rows, type_rows = await side.names(tables, types)
                state.resolve(table_rows, type_rows, copy)
                # process what was held; it may pause again (a later result set): same loop
                self._on_server_data(b"")
                if self.client.closed:
                    return
        except (CatalogError, ValueError) as exc:
            # fail closed: rows the gateway cannot mask are never sent
            self._catalog_task = None
            self.listener.gateway.writer.event(
                self.session_id, "masking_error", {"error": str(exc)}, self.prompt_id
            )
            log.warning(
                "masking look-up failed", extra={"connection": self.listener.cfg.name, "error": str(exc)}
            )
            self._cancel_orphaned_work()
            self._refuse("XX000", "the gateway cannot mask this result", detail=str(exc))
            up.conn.abort()
            return
        self._catalog_task = None
        up.conn.reading_held = False
        transport, client = up.conn.transport, self.client.transport
        if client is not None and client.get_write_buffer_size() > client.get_write_buffer_limits()[1]:
            return  # the client is slow: its resume_writing() restarts the upstream
        if transport is not None and not up.conn.closed:
            transport.resume_reading()

    def _guard_tripped(self, change: str) -> None:
        """The server changed a setting the policy checks rely on: end the session now."""
        gw = self.listener.gateway
        gw.writer.event(self.session_id, "guard_tripped", {"parameter": change}, self.prompt_id)
        log.warning(
            "session ended: guarded setting changed", extra={"session": self.session_id, "change": change}
        )
        self._cancel_orphaned_work()
        self._refuse(
            "42501",
            f"hoopgw ended the session: the server reported {change}, which the gateway's statement "
            "checks do not allow",
        )
        if self.upstream is not None:
            self.upstream.conn.abort()

    def _protocol_error(self, side: str, exc: PgProtocolError) -> None:
        gw = self.listener.gateway
        gw.writer.event(self.session_id, "protocol_error", {"side": side, "error": str(exc)}, self.prompt_id)
        if side == "client":
            self._cancel_orphaned_work()
            self._refuse("08P01", f"invalid message from client: {exc}")
        else:
            self._refuse("08P01", f"upstream {self.listener.cfg.name!r} broke the protocol: {exc}")
        if self.upstream is not None:
            self.upstream.conn.abort()

    def _cancel_orphaned_work(self) -> None:
        """The client is being dropped: have run() cancel what the upstream still executes for it."""
        up, state = self.upstream, self.state
        if up is not None and state is not None and state.pending > 0:
            self._orphan_cancel = CancelTarget(up.host, up.port, up.process_id, up.secret_key)

    def _on_client_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and not self.upstream.conn.closed:
            self._cancel_orphaned_work()
            self.upstream.conn.write(_TERMINATE)
            self.upstream.conn.close()
        self._finish("client disconnected" if exc is None else f"client connection broken: {exc}")

    def _on_server_lost(self, exc: Exception | None) -> None:
        if not self.client.closed:
            rid = self.holds.request_id
            held = f"; the statement held for approval request {rid} was not run" if rid else ""
            self.client.write(
                _core.encode_error(
                    "FATAL",
                    "08006",
                    f"connection to upstream {self.listener.cfg.name!r} was lost{held}",
                    detail=None if exc is None else str(exc),
                )
            )
            self.client.close()
        self._finish("upstream closed the connection")

    # -- operations -----------------------------------------------------------------------------
    def drain(self) -> None:
        """Close this session at its next idle point (graceful shutdown)."""
        self._draining = True
        self.holds.keep_request = True  # a held statement's request stays decidable across the restart
        if self.state is not None:
            self._maybe_drain()

    def _maybe_drain(self) -> None:
        state = self.state
        if state is None or state.pending > 0 or state.in_copy:
            return
        rid = self.holds.request_id
        if state.holding and rid is not None:
            # the gateway will not be there to release it: tell the client, keep the request
            self.holds.keep_request = True
            self.terminate(
                "57P01",
                "terminating connection because the gateway is shutting down: the statement held for "
                f"approval request {rid} was not run; the request stays open on record and can still be "
                "decided, but the statement must be sent again",
            )
        elif state.tx_status == "I" and not state.holding:
            self.terminate("57P01", "terminating connection because the gateway is shutting down")

    def terminate(self, sqlstate: str, message: str, detail: str | None = None) -> None:
        """End the session now with a FATAL error to the client (frame-aligned: we forward whole frames),
        cancelling what the upstream still runs for it (a closed socket goes unnoticed by a busy backend)."""
        if self.upstream is not None and not self.upstream.conn.closed:
            self._cancel_orphaned_work()
            self.upstream.conn.write(_TERMINATE)
            self.upstream.conn.close()
        self._refuse(sqlstate, message, detail)

    def _check_idle(self) -> None:
        idle = self.listener.gateway.config.gateway.idle_timeout
        state = self.state
        if idle is None or state is None or self._done.done():
            return
        quiet = time.monotonic() - self._last_activity
        if quiet >= idle and state.pending == 0 and not state.in_copy and not state.holding:
            self.terminate("57P05", "terminating connection due to idle timeout of the gateway")
            return
        self._idle_handle = asyncio.get_running_loop().call_later(max(idle - quiet, 1.0), self._check_idle)
