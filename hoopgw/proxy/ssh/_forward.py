"""Port forwarding (``-L``, ``-D``, ``-R``): refused unless a policy allows it; the allowed ones are
opened from (or listened for on) the target host and recorded (destination, bytes each way)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import asyncssh

from hoopgw.proxy.ssh._upstream import UpstreamError

if TYPE_CHECKING:
    from hoopgw.proxy.ssh._server import SshClientConnection

log = logging.getLogger("hoopgw.ssh")


def _decide(owner: SshClientConnection, kind: str, host: str, port: int) -> tuple[dict[str, Any], str | None]:
    """The policy's verdict on a forward: its record, and why it is refused (None: allowed)."""
    access = owner.access
    assert access is not None
    verdict = access.forward(kind, host, port)
    decision = verdict.decision
    record: dict[str, Any] = {
        "kind": kind,
        "destination": f"{host}:{port}",
        "classes": sorted(decision.classes),
        "verdict": decision.verdict,
        "rule": decision.rule,
    }
    if decision.verdict == "allow":
        return record, None
    message = verdict.message or "refused by policy"
    if decision.verdict == "approve":
        message += " (port forwards cannot wait for an approval: ask for a policy that allows it)"
    return record, message


async def open_direct(
    owner: SshClientConnection, dest_host: str, dest_port: int, orig_host: str, orig_port: int
) -> asyncssh.SSHTCPSession[bytes]:
    """A direct-tcpip channel the client asked for: decided, then relayed through the target."""
    record, refusal = _decide(owner, "local", dest_host, dest_port)
    record["origin"] = f"{orig_host}:{orig_port}"
    writer = owner.gateway.writer
    if refusal is not None:
        writer.event(owner.session_id, "ssh_forward", {**record, "verdict": "deny", "reason": refusal})
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, refusal)
    try:
        conn = await owner.upstream()
        relay = _Relay(owner, record)
        await conn.create_connection(lambda: _UpstreamSide(relay), dest_host, dest_port, encoding=None)
    except (UpstreamError, asyncssh.Error, OSError) as exc:
        writer.event(owner.session_id, "ssh_forward", {**record, "verdict": "error", "reason": str(exc)})
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, f"hoopgw: {exc}") from None
    writer.event(owner.session_id, "ssh_forward", record)
    return relay


async def open_remote(owner: SshClientConnection, listen_host: str, listen_port: int) -> Any:
    """A tcpip-forward request (``-R``): decided, then listened for on the target host; each connection
    made to it there comes back to the client as a forwarded-tcpip channel."""
    record, refusal = _decide(owner, "remote", listen_host, listen_port)
    writer = owner.gateway.writer
    if refusal is not None:
        writer.event(owner.session_id, "ssh_forward", {**record, "verdict": "deny", "reason": refusal})
        return False
    try:
        conn = await owner.upstream()

        def incoming(orig_host: str, orig_port: int) -> _UpstreamSide:
            relay = _Relay(owner, {**record, "origin": f"{orig_host}:{orig_port}"})
            side = _UpstreamSide(relay)
            task = asyncio.get_running_loop().create_task(
                _to_client(owner, relay, listen_host, listen_port, orig_host, orig_port)
            )
            owner.keep(task)
            return side

        listener = await conn.create_server(incoming, listen_host, listen_port, encoding=None)
    except (UpstreamError, asyncssh.Error, OSError) as exc:
        writer.event(owner.session_id, "ssh_forward", {**record, "verdict": "error", "reason": str(exc)})
        return False
    writer.event(owner.session_id, "ssh_forward", {**record, "port": listener.get_port()})
    return listener


async def _to_client(
    owner: SshClientConnection, relay: _Relay, host: str, port: int, orig_host: str, orig_port: int
) -> None:
    conn = owner.conn
    try:
        if conn is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "the client went away")
        await conn.create_connection(lambda: relay, host, port, orig_host, orig_port, encoding=None)
    except (asyncssh.Error, OSError) as exc:
        log.info(
            "remote forward not accepted by the client",
            extra={"session": owner.session_id, "error": str(exc)},
        )
        if relay.up is not None:
            relay.up.close()
        relay.closed()


class _Relay(asyncssh.SSHTCPSession[bytes]):
    """The client's side of a forwarded connection."""

    def __init__(self, owner: SshClientConnection, record: dict[str, Any]) -> None:
        self.owner = owner
        self.record = record
        self.chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self.up: asyncssh.SSHTCPChannel[bytes] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._closed = False
        #: target bytes that came before the client accepted the channel (remote forwards)
        self.early: list[bytes] = []

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.chan = chan
        early, self.early = self.early, []
        for data in early:
            chan.write(data)
        if self.up is not None:
            self.up.resume_reading()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.bytes_in += len(data)
        if self.up is not None:
            self.up.write(data)

    def eof_received(self) -> bool:
        if self.up is not None:
            self.up.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()
        self.closed()

    def closed(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.owner.gateway.writer.event(
            self.owner.session_id,
            "ssh_forward_closed",
            {
                "kind": "local",
                "destination": self.record["destination"],
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            },
        )


class _UpstreamSide(asyncssh.SSHTCPSession[bytes]):
    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.relay.up = chan

    def data_received(self, data: bytes, datatype: int | None) -> None:
        relay = self.relay
        relay.bytes_out += len(data)
        if relay.chan is not None:
            relay.chan.write(data)
        else:  # the client has not accepted the channel yet
            relay.early.append(data)
            if relay.up is not None:
                relay.up.pause_reading()

    def eof_received(self) -> bool:
        if self.relay.chan is not None:
            self.relay.chan.write_eof()
        return True

    def pause_writing(self) -> None:
        if self.relay.chan is not None:
            self.relay.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.relay.chan is not None:
            self.relay.chan.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relay.chan is not None:
            self.relay.chan.close()
        self.relay.closed()
