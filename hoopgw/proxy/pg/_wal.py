"""Write-ahead audit of one PostgreSQL session: no change reaches the database before the audit
store has durably committed the statement that makes it (docs/AUDIT.md).

The Rust core notes such statements (``take_intents``) as it processes a client read. Outside a
transaction block (autocommit) and for anything but plain writes, the read is *strict*: its bytes,
and every read after them, stay here until the audit writer reports its intents committed, then go
upstream in order. Inside an explicit transaction block a plain write (class ``write`` or
``write-without-where``) changes nothing anyone can see until the transaction commits, and nothing
at all if the connection drops: it goes upstream at once while its intent is committed, and the
next *barrier* (any statement that may end the transaction or act outside it: COMMIT, ROLLBACK,
DDL, a function call, ...) waits until every intent before it is durable. Reads and session
statements never wait otherwise. When the store cannot record an intent, nothing that followed it
is forwarded and the session ends with an error (an open transaction is rolled back by the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from hoopgw.errors import StoreError
from hoopgw.policy import ALL, mask_of

if TYPE_CHECKING:
    from hoopgw.proxy.pg._session import PgClientSession

log = logging.getLogger("hoopgw.pg")

#: classes recorded before they run: everything but reads and session statements
WRITE_AHEAD_MASK = ALL & ~mask_of(("read", "session"))
#: classes whose effects stay inside the transaction (anything else is a barrier)
CONTAINED_MASK = mask_of(("read", "write", "write-without-where"))
#: client bytes kept, or intents in flight, before the client's reads are paused (each intent is a
#: statement object: a flood of tiny writes costs far more memory than its bytes)
_PAUSE_AT = 4 * 1024 * 1024
_PAUSE_INTENTS = 10_000


class WriteAhead:
    """The bytes of one session that wait for their intents to be durable."""

    __slots__ = (
        "_buffered",
        "_counts",
        "_done",
        "_durable",
        "_enqueued",
        "_intents",
        "_loop",
        "_paused",
        "_queue",
        "_session",
    )

    def __init__(self, session: PgClientSession) -> None:
        self._session = session
        self._loop = asyncio.get_running_loop()
        #: (intent batches that must be durable first, bytes for upstream or None for Terminate)
        self._queue: deque[tuple[int, bytes | None]] = deque()
        self._enqueued = 0  # intent batches handed to the writer
        self._counts: deque[int] = deque()  # intents per batch not durable yet
        self._intents = 0  # ... their sum
        self._durable = 0  # ... and committed
        self._buffered = 0
        self._paused = False
        self._done = self._durable_threadsafe

    @property
    def waiting(self) -> bool:
        """Whether bytes wait for an intent."""
        return bool(self._queue)

    def take(self, forward: bytes, terminate: bool) -> bool:
        """Handle what the core made of a client read: record its intents, if any, and keep the
        bytes while any intent is in flight. True when the bytes were kept (the caller must not
        forward them, nor act on ``terminate``: they go, in order, once durable)."""
        session = self._session
        state = session.state
        assert state is not None
        noted = state.take_intents()
        if noted is None:
            if not self._queue:
                return False
        else:
            intents, strict, barrier = noted
            writer = session.gateway.writer
            if intents:
                sid = session.session_id
                assert sid is not None
                try:
                    # committed at once, even when nothing waits for them yet: by the time the
                    # transaction's COMMIT comes the commit is done or under way (group commit)
                    writer.intents(sid, intents, session.prompt_id, self._done)
                except StoreError as exc:
                    self._failed(str(exc))
                    return True
                self._enqueued += 1
                self._counts.append(len(intents))
                self._intents += len(intents)
            # a barrier waits for every intent in flight, this read's own included (a write and its
            # COMMIT pipelined in one read)
            if not (self._queue or strict or (barrier and self._enqueued > self._durable)):
                self._maybe_pause()
                return False  # plain writes inside a transaction: they run while being recorded
        if forward:
            self._queue.append((self._enqueued, forward))
            self._buffered += len(forward)
        if terminate:
            self._queue.append((self._enqueued, None))
        self._maybe_pause()
        return True

    def _maybe_pause(self) -> None:
        """Stop reading the client while too much waits (resumed once half of it is durable)."""
        if (self._buffered >= _PAUSE_AT or self._intents >= _PAUSE_INTENTS) and not self._paused:
            transport = self._session.client.transport
            if transport is not None:
                transport.pause_reading()
                self._paused = True

    def _durable_threadsafe(self, error: str | None) -> None:
        """Called by the audit writer's thread, once per intent batch, in order."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to forward
            self._loop.call_soon_threadsafe(self._on_durable, error)

    def _on_durable(self, error: str | None) -> None:
        session = self._session
        if session.closed:
            self._queue.clear()
            return
        if error is not None:
            self._failed(error)
            return
        self._durable += 1
        self._intents -= self._counts.popleft()
        up = session.upstream
        assert up is not None
        queue = self._queue
        while queue and queue[0][0] <= self._durable:
            _, data = queue.popleft()
            if data is None:
                session.apply(b"", True, None)
                queue.clear()
                return
            self._buffered -= len(data)
            up.conn.write(data)
        if self._paused and self._buffered < _PAUSE_AT // 2 and self._intents < _PAUSE_INTENTS // 2:
            self._paused = False
            transport = session.client.transport
            if transport is not None and not session.client.reading_held:
                transport.resume_reading()
        if not queue:
            session.wal_flushed()

    def _failed(self, error: str) -> None:
        """The store cannot record an intent: forward nothing more, end the session."""
        self._queue.clear()
        session = self._session
        log.error("write-ahead audit failed", extra={"session": session.session_id, "error": error})
        session.terminate(
            "58030",
            "hoopgw: the audit store cannot record this statement, so it was not run",
            detail=error,
        )
