"""A plain TCP relay on uvloop (bytes copied both ways, no SSH): what one more userspace hop costs.

``bench/ssh_e2e.py --relay`` measures ssh through this relay to its sshd: the difference to ``direct`` is
the floor any proxy process pays on the machine (two more loopback hops and one more process to wake up
per round trip), against which the gateway's own cost can be read.

    python bench/_tcp_relay.py LISTEN_PORT TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop


class _Side(asyncio.Protocol):
    """One connection of a relayed pair; what it reads goes to the other, with backpressure."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []  # read before the peer was connected (pause_reading can come late)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.transport is not None and self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
            return True
        return False

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class _Client(_Side):
    """The accepted side: reads nothing until the target is connected."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._target = (host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        try:
            _, up = await asyncio.get_running_loop().create_connection(_Side, *self._target)
        except OSError:
            self.transport.close()
            return
        up.peer, self.peer = self, up
        assert up.transport is not None
        for data in self.early:
            up.transport.write(data)
        self.early.clear()
        self.transport.resume_reading()


async def serve(listen_port: int, host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        lambda: _Client(host, port), "127.0.0.1", listen_port, reuse_address=True
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
