"""The gateway process: listeners, control API, audit writer, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

import uvloop

from hoopgw import _core
from hoopgw.api import ApiServer, ApprovalApi, KeyApi, build_app
from hoopgw.api._access import AccessApi, access_routes
from hoopgw.api._callback import CallbackApi, callback_routes
from hoopgw.api._prompts import PromptApi, prompt_routes
from hoopgw.api._sessions import SessionApi, SessionReader, session_routes
from hoopgw.api._sshkeys import SshKeyApi, sshkey_routes
from hoopgw.approvals import ApprovalService, ApprovalStore, load_digest_key, load_signing_key
from hoopgw.approvals._webhooks import DRAIN_S, WebhookNotifier, callback_key, webhook_key
from hoopgw.audit import AuditWriter
from hoopgw.audit._db import Store
from hoopgw.audit._prompts import PromptStore
from hoopgw.audit._retention import purge
from hoopgw.audit._siem import SiemStreamer
from hoopgw.config import Config, PostgresConnection, SshConnection
from hoopgw.errors import HoopError
from hoopgw.identity import ApiKeyStore, Authenticator
from hoopgw.identity._sshca import SshCertAuthority
from hoopgw.identity._sshkeys import SshKeyStore
from hoopgw.masking import build_maskers, masking_key
from hoopgw.policy._classify import Classifier
from hoopgw.policy._engine import connections_without_policy
from hoopgw.proxy._tls import server_context
from hoopgw.proxy.pg import CancelRegistry, PgListener
from hoopgw.proxy.ssh._listener import SshListener

if TYPE_CHECKING:
    from hoopgw.identity import Principal

log = logging.getLogger("hoopgw")

#: how long a thread may hold the GIL while another waits for it (Python's default: 5 ms)
_SWITCH_INTERVAL_S = 0.0005
#: how often pending approval requests past their expiry are closed
_EXPIRY_SWEEP_S = 1.0
#: the first audit purge after start (then every ``[audit] purge_interval``)
_FIRST_PURGE_S = 60.0


class LiveSession(Protocol):
    """What the gateway asks of a client session of any protocol."""

    @property
    def principal(self) -> Principal | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def closed(self) -> bool: ...
    def terminate(self, code: str, message: str) -> None: ...


class Gateway:
    """Everything one gateway process runs, wired from one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        gw = config.gateway
        gw.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        #: webhooks told when requests open and close (signed with the webhook secret, when set)
        secret = callback_key(config.approvals)
        self.notifier = WebhookNotifier.from_config(
            config.approvals,
            base_url=self.approvals_url,
            secret=webhook_key(config.approvals),
            buttons=secret is not None,
        )
        self.authenticator = Authenticator.from_config(config)
        self.server_tls = server_context(gw)
        #: the audit store: data_dir's SQLite file, or the PostgreSQL database of [audit] store
        self.store = store = Store.for_config(config)
        self.writer = AuditWriter(
            store,
            flush_interval=gw.audit_flush_interval,
            checkpoint_every=config.audit.checkpoint_every,
            checkpoint_interval=config.audit.checkpoint_interval,
        )
        #: committed events streamed to [[audit.siem]] sinks (bounded queues: never slows the writer)
        self.siem = SiemStreamer.from_config(config.audit, writer=self.writer) if config.audit.siem else None
        if self.siem is not None:
            self.writer.add_listener(self.siem.offer)
        self.cancels = CancelRegistry()
        #: statement classification: the parser (cache misses) and the cache shared by every session
        self.classifier = Classifier(config.sql)
        self.sql_cache = _core.SqlCache(config.sql.cache_size)
        maskers = build_maskers(config, masking_key(config)) if config.masking else {}
        self._maskers = maskers
        self.listeners: list[PgListener | SshListener] = [
            PgListener(self, c, self.cancels, maskers.get(c.name))
            for c in config.connections
            if isinstance(c, PostgresConnection)
        ]
        # ssh connections sharing one listen address share one listener (the user name picks one)
        ssh_by_listen: dict[str, list[SshConnection]] = {}
        for c in config.connections:
            if isinstance(c, SshConnection):
                ssh_by_listen.setdefault(str(c.listen), []).append(c)
        self.listeners += [SshListener(self, cfgs, maskers) for cfgs in ssh_by_listen.values()]
        #: SSH client identities: registered public keys, and the CA that signs OIDC users' keys
        self.ssh_keys = SshKeyStore(store)
        self.ssh_ca = SshCertAuthority(gw.data_dir)
        key_store = ApiKeyStore(store)
        #: approval requests and decisions, signed with the gateway's key (docs/APPROVALS.md)
        self.approvals = ApprovalService(
            ApprovalStore(store),
            load_signing_key(gw.data_dir),
            load_digest_key(gw.data_dir),
            api_keys=key_store,
            mask_text=self._mask_text,
        )
        if self.notifier.active:
            self.approvals.add_listener(self.notifier.notify)
        self.callback = CallbackApi.from_config(self.approvals, config.approvals, secret, self.writer.event)
        keys = KeyApi(key_store, self.authenticator, gw.admins, self.writer.event, self.key_revoked)
        approvals = ApprovalApi(
            self.approvals,
            self.authenticator,
            load_signing_key(gw.data_dir).public_key(),
            admins=gw.admins,
            auditors=gw.auditors,
            audit=self.writer.event,
        )
        access = AccessApi(config, self.approvals, self.authenticator, audit=self.writer.event)
        prompts = PromptApi(
            PromptStore(store),
            store,
            self.authenticator,
            self.mask_prompt,
            admins=gw.admins,
            auditors=gw.auditors,
            audit=self.writer.event,
        )
        sessions = SessionApi(
            SessionReader(store),
            self.authenticator,
            admins=gw.admins,
            auditors=gw.auditors,
            audit=self.writer.event,
            end_session=self.end_session,
            api_keys=key_store,
        )
        ssh_api = SshKeyApi(
            self.ssh_keys,
            self.ssh_ca,
            self.authenticator,
            admins=gw.admins,
            auditors=gw.auditors,
            audit=self.writer.event,
            certificate_ttl=config.ssh.certificate_ttl,
            on_remove=self.ssh_key_removed,
        )
        more = [
            *access_routes(access),
            *sshkey_routes(ssh_api),
            *callback_routes(self.callback),
            *prompt_routes(prompts),
            *session_routes(sessions),
        ]
        app = build_app(self.status, keys=keys, approvals=approvals, routes=more)
        self.api = ApiServer(app, gw.api_listen) if gw.api_listen else None
        self.started_at = time.time()
        self._stop: asyncio.Event | None = None

    def status(self) -> dict[str, Any]:
        """Live numbers for /healthz."""
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "sessions": sum(len(listener.sessions) for listener in self.listeners),
            "connections": [name for listener in self.listeners for name in _names(listener)],
            "siem": self.siem.stats() if self.siem is not None else [],
        }

    def mask_text_for(self, connection: str, text: str) -> str:
        """``text`` masked with ``connection``'s rules (commands in SSH records and requests)."""
        return self._mask_text(connection, text)

    def _mask_text(self, connection: str, text: str) -> str:
        """``text`` masked with ``connection``'s rules (approval reasons are masked like statements)."""
        masker = self._maskers.get(connection)
        return masker.mask_text(text) if masker is not None else text

    def mask_prompt(self, text: str) -> str:
        """``text`` masked with every connection's rules in turn (a registered prompt is not tied to one
        connection, so whatever any rule masks is masked: docs/PROMPTS.md)."""
        for masker in self._maskers.values():
            text = masker.mask_text(text)
        return text

    @property
    def approvals_url(self) -> str | None:
        """Base URL of the console / API where approvers decide (shown to waiting clients)."""
        url = self.config.approvals.url
        if url is not None:
            return url.rstrip("/")
        listen = self.config.gateway.api_listen
        if listen is None:
            return None
        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        return f"http://{host}:{listen.port}"

    async def _expire_approvals(self) -> None:
        """Close requests whose time ran out (waiters in this process also have their own timers),
        and wake waiters whose request another process decided."""
        while True:
            await asyncio.sleep(_EXPIRY_SWEEP_S)
            try:
                # on a thread: a store another process holds locked must not stall every session
                await asyncio.to_thread(self._sweep_approvals)
            except HoopError as exc:
                log.warning("cannot expire approval requests", extra={"error": str(exc)})

    def _sweep_approvals(self) -> None:
        self.approvals.expire_due()
        self.approvals.poll_waiters()

    async def _purge_expired(self) -> None:
        """Purge the audit events ``[audit] retention_days`` expires, every ``purge_interval``
        (docs/AUDIT.md), in a worker thread; each purge is recorded as an ``audit_purge`` event."""
        audit, data_dir = self.config.audit, self.config.gateway.data_dir
        key = load_signing_key(data_dir)
        loop = asyncio.get_running_loop()
        delay = min(audit.purge_interval, _FIRST_PURGE_S)
        while True:
            await asyncio.sleep(delay)
            delay = audit.purge_interval
            try:
                result = await loop.run_in_executor(
                    None, purge, self.store, audit.retention_days, time.time(), key
                )
                for payload in result.events:
                    self.writer.event(None, "audit_purge", payload)
            except HoopError as exc:
                log.warning("cannot purge the audit store", extra={"error": str(exc)})
                continue
            if result.records:
                log.info("audit events purged", extra=result.to_json())

    def key_revoked(self, name: str) -> None:
        """End the live sessions of the API key ``name`` (called by the API right after revoking it)."""
        for session in self.live_sessions():
            principal = session.principal
            if principal is not None and principal.auth == "apikey" and principal.subject == name:
                session.terminate("28P01", f"terminating connection: the API key {name!r} was revoked")

    def ssh_key_removed(self, fingerprint: str) -> None:
        """End the live SSH sessions that logged in with the registered key ``fingerprint``."""
        for session in self.live_sessions():
            principal = session.principal
            if principal is not None and principal.auth == "sshkey" and principal.token_id == fingerprint:
                session.terminate("57P01", "hoopgw: the SSH key of this session was removed")

    def end_session(self, session_id: str, message: str) -> bool:
        """End the live session ``session_id`` (SQLSTATE 57P01, ``message``); False when none has it."""
        for session in self.live_sessions():
            if session.session_id == session_id and not session.closed:
                session.terminate("57P01", message)
                return True
        return False

    def live_sessions(self) -> list[LiveSession]:
        """Every client session of every listener (PostgreSQL and SSH), now."""
        found: list[LiveSession] = []
        for listener in self.listeners:
            found.extend(listener.sessions)
        return found

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then shut down gracefully; return the exit status."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.notifier.start()
        if self.siem is not None:
            self.siem.start()
        try:
            for listener in self.listeners:
                await listener.start()
            if self.api is not None:
                await self.api.start()
        except OSError as exc:
            log.error("cannot start: %s", exc)  # noqa: TRY400 - a clear line, no traceback
            await self._shutdown(0.0)
            return 1
        names = [name for lst in self.listeners for name in _names(lst)]
        log.info("gateway ready", extra={"connections": names})
        for name in connections_without_policy(self.config):
            log.warning("no policy names this connection: every login to it will be refused",
                        extra={"connection": name})  # fmt: skip
        warm_up = asyncio.create_task(self.authenticator.warm_up())  # OIDC discovery and keys, never fatal
        sweep = asyncio.create_task(self._expire_approvals())
        purger = asyncio.create_task(self._purge_expired()) if self.config.audit.retention_days else None
        await self._stop.wait()
        warm_up.cancel()
        sweep.cancel()
        if purger is not None:
            purger.cancel()
        log.info("shutting down", extra={"timeout_s": self.config.gateway.shutdown_timeout})
        await self._shutdown(self.config.gateway.shutdown_timeout)
        return 0

    async def _shutdown(self, grace: float) -> None:
        for listener in self.listeners:
            listener.stop_accepting()
            listener.drain()
        deadline = time.monotonic() + grace
        for listener in self.listeners:
            await listener.wait_sessions(max(0.0, deadline - time.monotonic()))
        for listener in self.listeners:
            listener.terminate_all("57P01", "terminating connection because the gateway is shutting down")
        for listener in self.listeners:
            await listener.wait_sessions(2.0)
            await listener.close()
        if self.api is not None:
            await self.api.stop()
        await self.notifier.close(DRAIN_S)  # after the sessions and the API: their last closes go out
        if self.siem is not None:
            self.siem.report()  # the last counts go into the trail, sealed by the final checkpoint
        await asyncio.get_running_loop().run_in_executor(None, self.writer.close)
        if self.siem is not None:  # after the writer: its last events and checkpoint are streamed too
            await asyncio.get_running_loop().run_in_executor(None, self.siem.stop)


def _names(listener: PgListener | SshListener) -> list[str]:
    return listener.names if isinstance(listener, SshListener) else [listener.cfg.name]


def serve(config: Config) -> int:
    """Run a gateway for ``config`` on uvloop until it is told to stop; return the exit status."""
    try:
        gateway = Gateway(config)
    except HoopError as exc:
        log.error("cannot start: %s", exc)  # noqa: TRY400 - a clear line, no traceback
        return 1
    # The audit writer thread needs the GIL back promptly after each commit (write-ahead sessions
    # wait for it); the default 5 ms switch interval lets a busy event loop keep it that long.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    return uvloop.run(gateway.run())
