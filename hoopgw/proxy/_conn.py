"""One TCP (or TLS) connection as an asyncio protocol with two modes.

During the handshake the gateway reads with ``await conn.read()``; once both sides are authenticated the
connection is switched to relay mode, where every socket read goes straight to a callback (one call into
the Rust core per read) without any coroutine or buffer in between.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from hoopgw.errors import HoopError


class ConnectionClosed(HoopError):
    """The peer closed the connection (or it broke) before the expected bytes arrived."""


class Conn(asyncio.Protocol):
    """A connection that buffers reads for ``read()`` until ``relay()`` installs a data callback."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_data: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[Exception | None], None] | None = None
        #: set by relay(): the other side, paused while this side's write buffer is full
        self._peer: Conn | None = None
        #: reading stopped for a reason other than backpressure (a masking look-up): backpressure
        #: relief must not restart it
        self.reading_held = False

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(data)
            return
        self._buf += data
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()
        if self._on_lost is not None:
            cb, self._on_lost = self._on_lost, None
            cb(exc)

    def pause_writing(self) -> None:
        if self._peer is not None and self._peer.transport is not None:
            self._peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self._peer
        if peer is not None and peer.transport is not None and not peer.reading_held:
            peer.transport.resume_reading()

    # -- handshake mode ------------------------------------------------------------------------
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed or self.transport is None or self.transport.is_closing()

    async def read(self) -> bytes:
        """Return whatever is buffered, waiting for at least one byte; raise ConnectionClosed at EOF."""
        while not self._buf:
            if self._closed:
                raise ConnectionClosed("connection closed by peer")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        """Upgrade this connection to TLS in place (nothing may be buffered)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(
            self.transport,
            self,
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=15.0,
        )
        self.transport = cast(asyncio.Transport, new)

    @property
    def is_tls(self) -> bool:
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is not None

    # -- relay mode ----------------------------------------------------------------------------
    def relay(
        self,
        peer: Conn,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[Exception | None], None],
        pending: bytes = b"",
    ) -> None:
        """Switch to relay mode: ``pending``, anything buffered, then every read goes to ``on_data``."""
        self._peer = peer
        self._on_data = on_data
        self._on_lost = on_lost
        data = pending + bytes(self._buf)
        self._buf.clear()
        if data:
            on_data(data)
        if self._closed and self._on_lost is not None:
            cb, self._on_lost = self._on_lost, None
            cb(None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
