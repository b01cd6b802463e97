"""The listening socket of one ``type = "postgres"`` connection."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from hoopgw import _core
from hoopgw.proxy._conn import Conn
from hoopgw.proxy.pg._cancel import CancelRegistry
from hoopgw.proxy.pg._catalog import SideConnection
from hoopgw.proxy.pg._session import PgClientSession

if TYPE_CHECKING:
    from hoopgw.config import PostgresConnection
    from hoopgw.server import Gateway

log = logging.getLogger("hoopgw.pg")


class _Accepted(Conn):
    """A freshly accepted client connection that starts its session as soon as it is made."""

    def __init__(self, listener: PgListener) -> None:
        super().__init__()
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._listener.spawn(self)


class PgListener:
    """Accepts PostgreSQL clients on ``cfg.listen`` and proxies them to ``cfg.upstream``."""

    def __init__(
        self,
        gateway: Gateway,
        cfg: PostgresConnection,
        cancels: CancelRegistry,
        masker: _core.Masker | None = None,
    ) -> None:
        self.gateway = gateway
        self.cfg = cfg
        self.cancels = cancels
        #: The connection's masking engine (None: nothing to mask) and the side connection its
        #: catalog look-ups run on.
        self.masker = masker
        self.catalog = SideConnection(cfg)
        self.sessions: set[PgClientSession] = set()
        #: approvals with ``covers = "shape"``: (subject, auth, connection, normalized statement) ->
        #: until (epoch seconds); in memory, so a restart ends them early (never late)
        self.shape_approvals: dict[tuple[str, str, str, bytes], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Accepted(self), self.cfg.listen.host, self.cfg.listen.port, backlog=1024
        )
        log.info("listening", extra={"connection": self.cfg.name, "listen": f"{self.cfg.listen}"})

    def spawn(self, conn: Conn) -> None:
        session = PgClientSession(self, conn)
        self.sessions.add(session)
        task = asyncio.get_running_loop().create_task(self._serve(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, session: PgClientSession) -> None:
        try:
            await session.run()
        except Exception:
            log.exception("session failed", extra={"connection": self.cfg.name})
        finally:
            self.sessions.discard(session)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def drain(self) -> None:
        for session in list(self.sessions):
            session.drain()

    async def wait_sessions(self, within: float) -> bool:
        """Wait until every session has ended; False when ``within`` seconds passed first."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=within)
        return not pending

    def terminate_all(self, sqlstate: str, message: str) -> None:
        for session in list(self.sessions):
            session.terminate(sqlstate, message)

    async def close(self) -> None:
        """Release what outlives sessions (the catalog side connection)."""
        await self.catalog.close()
