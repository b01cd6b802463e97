"""One client's SSH connection to the gateway: authentication, then channels relayed upstream."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

import asyncssh

from hoopgw.audit import SessionInfo
from hoopgw.errors import HoopError
from hoopgw.identity._sshauth import SshClientAuth
from hoopgw.proxy.ssh._access import SshAccess
from hoopgw.proxy.ssh._channel import ClientSession
from hoopgw.proxy.ssh._forward import open_direct, open_remote
from hoopgw.proxy.ssh._upstream import UpstreamError, connect_upstream

if TYPE_CHECKING:
    from hoopgw.config import SshConnection
    from hoopgw.identity import Principal
    from hoopgw.proxy.ssh._listener import SshListener

log = logging.getLogger("hoopgw.ssh")

#: OpenSSH's client sends at most this many bytes of a password (it cuts longer ones)
_OPENSSH_PASSWORD_CUT = 1023
#: how often open channels' recorders emit their due chunks
_TICK_S = 1.0


class SshClientConnection(asyncssh.SSHServer):
    """The asyncssh server object of one client connection."""

    def __init__(self, listener: SshListener) -> None:
        self.listener = listener
        self.gateway = listener.gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.cfg: SshConnection | None = None
        self.username = ""
        self.client_addr: str | None = None
        self.principal: Principal | None = None
        self.access: SshAccess | None = None
        self.session_id: str = self.gateway.writer.new_session_id()
        self.opened = False
        self.closed = False
        self.channels: set[ClientSession] = set()
        self._upstream: asyncio.Task[asyncssh.SSHClientConnection] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._channel_seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        #: the client's forwarded agent, once a policy allowed it (a UNIX socket asyncssh listens on)
        self.agent_path: str | None = None
        self._failures = 0
        #: public keys and certificates (the person is known once a signed login succeeds)
        self.auth = SshClientAuth(
            self.gateway.ssh_keys, self.gateway.ssh_ca, accept=self._accept, refused=self._failed
        )
        self._password_principal: Principal | None = None
        self._access: dict[Principal, SshAccess] = {}

    # -- connection ---------------------------------------------------------------------------------
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.auth.attach(conn)
        conn.create_agent_listener = self._agent_forwarding  # type: ignore[method-assign]  # see there
        peer = conn.get_extra_info("peername")
        self.client_addr = f"{peer[0]}:{peer[1]}" if peer else None
        self.listener.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.sessions.discard(self)
        self.closed = True
        for channel in list(self.channels):
            channel.client_gone()
        if self._ticker is not None:
            self._ticker.cancel()
        for timer in self._timers:
            timer.cancel()
        if self._upstream is not None:
            if (
                self._upstream.done()
                and not self._upstream.cancelled()
                and self._upstream.exception() is None
            ):
                self._upstream.result().close()
            else:
                self._upstream.cancel()
        if self.opened:
            reason = "client disconnected" if exc is None else f"connection lost: {exc}"
            counts: dict[str, int] = {}
            for channel in self._all_channels:
                for name, n in channel.mask_counts().items():
                    counts[name] = counts.get(name, 0) + n
            self.gateway.writer.session_close(self.session_id, reason, counts)
        elif self.principal is None and self.cfg is not None and self.username:
            pass  # failed logins are recorded as auth_failed events as they happen

    # -- authentication ------------------------------------------------------------------------------
    def begin_auth(self, username: str) -> bool:
        self.username = username
        self.cfg = self.listener.connection_for(username)
        if self.cfg is None and self.conn is not None:
            # the names of the connections are not told to whoever asks
            self.conn.send_auth_banner(
                "hoopgw: the user name names no connection on this port; log in as NAME@CONNECTION\r\n"
            )
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.cfg is None:
            return False
        try:
            return await self.auth.validate_public_key(key)
        except HoopError as exc:
            log.warning("cannot look up an SSH key", extra={"error": str(exc)})
            return False

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self.cfg is not None and self.auth.validate_ca_key(key)

    async def validate_password(self, username: str, password: str) -> bool:
        """An API key or a (short) token as the password."""
        if self.cfg is None:
            return False
        try:
            principal = await self.gateway.authenticator.authenticate(password)
        except HoopError as exc:
            self._failed("password", str(exc))
            if len(password.encode()) >= _OPENSSH_PASSWORD_CUT and self.conn is not None:
                self.conn.send_auth_banner(
                    "hoopgw: OpenSSH cuts passwords at 1,023 bytes and this one is that long: a token "
                    "this long does not fit; use `hoopgw login --ssh` (a certificate) or an API key\r\n"
                )
            return False
        if not self._accept(principal):
            return False
        self._password_principal = principal
        return True

    def _failed(self, method: str, why: str) -> None:
        self._failures += 1
        assert self.cfg is not None
        self.gateway.writer.event(
            None,
            "auth_failed",
            {
                "connection": self.cfg.name,
                "protocol": "ssh",
                "method": method,
                "user": self.username[:200],
                "client_addr": self.client_addr,
                "reason": why[:500],
            },
        )

    def _accept(self, principal: Principal) -> bool:
        """True when a policy names ``principal`` on this connection (else refused, with a banner)."""
        if self.cfg is None:
            return False
        access = SshAccess(self.gateway, self.cfg, principal)
        if access.empty:
            self._failed("policy", f"no policy names {principal.subject} on {self.cfg.name}")
            if self.conn is not None:
                self.conn.send_auth_banner(f"hoopgw: no policy gives you access to {self.cfg.name!r}\r\n")
            return False
        self._access[principal] = access
        return True

    def auth_completed(self) -> None:
        principal = self.auth.principal or self._password_principal
        assert self.cfg is not None and principal is not None
        self.principal = principal
        self.access = self._access.get(principal) or SshAccess(self.gateway, self.cfg, principal)
        self.opened = True
        self.gateway.writer.session_open(
            SessionInfo(
                id=self.session_id,
                type="ssh",
                connection=self.cfg.name,
                subject=principal.subject,
                groups=sorted(principal.groups),
                client_addr=self.client_addr,
                auth=principal.auth,
                params={
                    "user": self.username[:200],
                    "upstream": f"{self.cfg.upstream.user}@{self.cfg.upstream.host}:{self.cfg.upstream.port}",
                },
            )
        )
        loop = asyncio.get_running_loop()
        expires = principal.expires_at
        if expires is not None:  # a token or certificate: the session ends with it (plus the grace)
            delay = max(0.0, expires + self.gateway.config.identity.session_grace - time.time())
            self._timers.append(loop.call_later(delay, self._expired))
        self._arm_window()
        self._upstream = loop.create_task(connect_upstream(self.cfg))
        self._upstream.add_done_callback(_consume)
        self._ticker = loop.create_task(self._tick())
        log.info(
            "ssh session opened",
            extra={"session": self.session_id, "connection": self.cfg.name, "subject": principal.subject},
        )

    async def upstream(self) -> asyncssh.SSHClientConnection:
        """The connection to the target (one per client connection); raises UpstreamError."""
        assert self._upstream is not None
        conn = await asyncio.shield(self._upstream)
        if conn.is_closed():
            raise UpstreamError("the target host closed the gateway's connection")
        return conn

    def _expired(self) -> None:
        assert self.principal is not None
        self.gateway.writer.event(
            self.session_id,
            "credential_expired",
            {"subject": self.principal.subject, "auth": self.principal.auth},
        )
        self.terminate("28P01", "hoopgw: the credential of this session expired; log in again")

    def _arm_window(self) -> None:
        """At the next policy time-window edge, decide the open channels again (and re-arm)."""
        assert self.access is not None
        nxt = self.access.policy.next_change()
        if nxt is None:
            return
        delay = max(0.0, (nxt - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05
        self._timers.append(asyncio.get_running_loop().call_later(delay, self._window_edge))

    def _window_edge(self) -> None:
        for channel in list(self.channels):
            channel.recheck()
        if not self.closed:
            self._arm_window()

    def upstream_dead(self) -> bool:
        """True when the connection to the target has closed (it died under the open channels)."""
        task = self._upstream
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return False
        return bool(task.result().is_closed())

    async def _tick(self) -> None:
        while not self.closed:
            await asyncio.sleep(_TICK_S)
            for channel in list(self.channels):
                channel.tick()

    # -- channels ------------------------------------------------------------------------------------
    @property
    def _all_channels(self) -> list[ClientSession]:
        return list(self.channels) + list(getattr(self, "_ended_channels", []))

    def next_channel(self) -> int:
        self._channel_seq += 1
        return self._channel_seq

    def channel_ended(self, channel: ClientSession) -> None:
        self.channels.discard(channel)
        ended: list[ClientSession] = self.__dict__.setdefault("_ended_channels", [])
        ended.append(channel)

    def session_requested(self) -> ClientSession:
        channel = ClientSession(self, self.next_channel())
        self.channels.add(channel)
        return channel

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        return open_direct(self, dest_host, dest_port, orig_host, orig_port)

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        return open_remote(self, listen_host, listen_port)

    async def _agent_forwarding(self) -> bool:
        """asyncssh asks this (in place of ``SSHServerConnection.create_agent_listener``) when a client
        asks for agent forwarding (``ssh -A``): refused unless a policy allows ``forward`` /
        ``forward:agent``; allowed, asyncssh's own listener (a private UNIX socket that opens an agent
        channel back to the client) is what the target's agent requests are relayed to. Both recorded."""
        access, conn = self.access, self.conn
        if access is None or conn is None:
            return False
        verdict = access.forward("agent", "", 0)
        decision = verdict.decision
        record = {"kind": "agent", "classes": sorted(decision.classes), "rule": decision.rule}
        if decision.verdict != "allow":
            reason = verdict.message or "refused by policy"
            self.gateway.writer.event(
                self.session_id, "ssh_forward", {**record, "verdict": "deny", "reason": reason}
            )
            return False
        if not await asyncssh.SSHServerConnection.create_agent_listener(conn):
            return False
        self.agent_path = conn.get_agent_path()
        self.gateway.writer.event(self.session_id, "ssh_forward", {**record, "verdict": "allow"})
        return True

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a background task of this connection until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- gateway control -----------------------------------------------------------------------------
    def drain(self) -> None:
        """The gateway is shutting down: tell the open channels."""
        for channel in list(self.channels):
            channel.notice("hoopgw: the gateway is shutting down; this session will end soon\r\n")

    def terminate(self, _code: str, message: str) -> None:
        """End the connection now with ``message`` (shown on every open channel's stderr)."""
        for channel in list(self.channels):
            channel.notice(f"{message}\r\n")
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, message[:200])

    @property
    def now(self) -> float:
        return time.time()


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a background task's exception so it is not logged as never retrieved."""
    if not task.cancelled():
        task.exception()
