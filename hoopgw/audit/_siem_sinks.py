"""Where streamed audit events go: a file, stdout, syslog (RFC 5424 over UDP or TCP) or an HTTP endpoint.

Each sink is driven by one worker thread (``hoopgw.audit._siem``): :meth:`Sink.send` delivers a batch
of ``(event, line)`` pairs — ``line`` is the event's JSON line without its newline — or raises
:class:`SinkError` saying how many of the batch went out and whether the rest is worth retrying;
:meth:`Sink.close` releases what the sink holds. A sink's ``name`` is shown in logs, counters and
``siem_*`` audit events, so it never carries a secret (an HTTP sink shows only the URL's host).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
import orjson

from hoopgw import __version__
from hoopgw.audit._writer import Committed
from hoopgw.config import SecretRef
from hoopgw.errors import SecretError

#: one event and its JSON line (no newline)
Item = tuple[Committed, bytes]

#: RFC 5424 severities used: warning for errors and lost events, notice for refusals, info otherwise
WARNING, NOTICE, INFO = 4, 5, 6
_NOTICE_KINDS = frozenset(
    {
        "auth_failed",
        "credential_expired",
        "policy_window_closed",
        "guard_tripped",
        "session_ended_by_admin",
        "key_revoked",
        "ssh_key_removed",
        "approval_void",
    }
)
_WARNING_KINDS = frozenset({"audit_overflow", "siem_overflow"})
#: UDP: one datagram per event, at most this long (RFC 5426 wants 2048 accepted; rsyslog takes 8 KiB)
UDP_MAX = 8192
#: TCP (octet counting): the most one message may take before its ``data`` is left out
TCP_MAX = 65536
_BOM = b"\xef\xbb\xbf"
_MSGID_MAX = 32


class SinkError(Exception):
    """A batch was not (wholly) delivered: ``sent`` items went out, ``retry`` says whether to try the rest
    again. The message is safe to log and record (no URL, no token)."""

    def __init__(self, message: str, *, retry: bool, sent: int = 0) -> None:
        super().__init__(message)
        self.retry = retry
        self.sent = sent


# --- the line -----------------------------------------------------------------------------------------


def rfc3339(ts: float) -> str:
    """``2025-11-25T12:00:00.123456Z``: RFC 3339 in UTC with microseconds (also RFC 5424's TIMESTAMP)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_line(event: Committed, gateway: str, *, with_data: bool = True) -> bytes:
    """The event as one JSON object (no newline). ``data`` is the stored JSON text verbatim (never
    re-encoded); without it (``with_data=False``, for a message too long) ``truncated`` and
    ``data_bytes`` say what was left out."""
    seq, ts, session_id, kind, data, prompt_id, digest = event
    doc: dict[str, object] = {
        "seq": seq,
        "ts": rfc3339(ts),
        "epoch": ts,
        "session_id": session_id,
        "kind": kind,
        "data": orjson.Fragment(data) if with_data else None,
        "prompt_id": prompt_id,
        "hash": digest.hex(),
        "gateway": gateway,
    }
    if not with_data:
        doc["truncated"] = True
        doc["data_bytes"] = len(data.encode())
    return orjson.dumps(doc)


def severity(kind: str) -> int:
    """The syslog severity of an event kind: warning (4) for ``*_error`` and lost events, notice (5)
    for refusals (``*_denied``, ``auth_failed``, ...), info (6) for the rest."""
    if kind.endswith("_error") or kind in _WARNING_KINDS:
        return WARNING
    if kind.endswith("_denied") or kind in _NOTICE_KINDS:
        return NOTICE
    return INFO


def _printable(text: str, limit: int) -> str:
    """RFC 5424 header field: printable US-ASCII without spaces, at most ``limit``, ``-`` when empty."""
    kept = "".join(ch for ch in text if "!" <= ch <= "~")[:limit]
    return kept or "-"


def syslog_message(
    item: Item, *, facility: int, hostname: str, app_name: str, procid: str, limit: int, gateway: str
) -> bytes:
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG`` (RFC 5424) of at most ``limit``
    bytes: MSG is the JSON line, without its ``data`` when the whole would be longer."""
    event, line = item
    kind = event[3]
    head = (
        f"<{facility * 8 + severity(kind)}>1 {rfc3339(event[1])} {hostname} {app_name} {procid} "
        f"{_printable(kind, _MSGID_MAX)} - "
    ).encode("ascii")
    room = limit - len(head) - len(_BOM)
    if len(line) > room:
        line = json_line(event, gateway, with_data=False)
        if len(line) > room:  # only with absurd session or prompt ids: cut (the line is no longer JSON)
            line = line[: max(0, room)]
    return head + _BOM + line


# --- the sinks ----------------------------------------------------------------------------------------


class Sink:
    """A destination; subclasses set the batching limits and implement :meth:`send`."""

    #: most events per batch, most bytes of lines per batch, and how long to wait for a batch to fill
    batch_max: ClassVar[int] = 1000
    batch_bytes: ClassVar[int] = 1 << 20
    linger: ClassVar[float] = 0.0

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, batch: Sequence[Item]) -> None:
        """Deliver ``batch`` in order, or raise SinkError."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files, sockets and clients (the sink is not used afterwards)."""


def _lines(batch: Sequence[Item]) -> bytes:
    return b"".join([line + b"\n" for _, line in batch])


class FileSink(Sink):
    """Appends lines to ``path`` (created 0600), one ``write`` per batch; reopens the path when it was
    moved or replaced (logrotate); a failed write (disk full) loses that batch, and a line it tore is
    ended before the next batch so the lines after it parse."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self._fd = self._open()  # at startup: a path that cannot be opened stops the gateway
        self._torn = False

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _reopen_if_moved(self) -> None:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            now = None
        except OSError:
            if self._fd >= 0:
                return  # cannot tell: keep writing where we are
            now = None
        if self._fd >= 0:
            if now is not None:
                cur = os.fstat(self._fd)
                if (cur.st_dev, cur.st_ino) == (now.st_dev, now.st_ino):
                    return
            os.close(self._fd)
            self._fd = -1
        try:
            self._fd = self._open()
        except OSError as exc:
            raise SinkError(f"cannot open the file: {exc.strerror}", retry=False) from None
        self._torn = False

    def send(self, batch: Sequence[Item]) -> None:
        self._reopen_if_moved()
        data = _lines(batch)
        lead = 1 if self._torn else 0
        if lead:
            data = b"\n" + data
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            self._torn = written > 0 and data[written - 1 : written] != b"\n"
            sent = max(0, data.count(b"\n", 0, written) - lead)
            raise SinkError(f"write failed: {exc.strerror}", retry=False, sent=sent) from None
        self._torn = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StdoutSink(Sink):
    """Writes lines to the process's standard output (the gateway logs to stderr), flushed per batch."""

    def send(self, batch: Sequence[Item]) -> None:
        out = sys.stdout
        try:
            out.write(_lines(batch).decode())
            out.flush()
        except (OSError, ValueError) as exc:  # a closed pipe or stream
            raise SinkError(f"cannot write to stdout: {type(exc).__name__}", retry=False) from None


class _SyslogSink(Sink):
    limit: ClassVar[int] = UDP_MAX

    def __init__(
        self, name: str, host: str, port: int, *, facility: int, app_name: str, timeout: float, gateway: str
    ) -> None:
        super().__init__(name)
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self.facility, self.app_name, self.gateway = facility, _printable(app_name, 48), gateway
        self.hostname = _printable(gateway, 255)
        self.procid = str(os.getpid())

    def message(self, item: Item) -> bytes:
        """The RFC 5424 message of one event."""
        return syslog_message(
            item,
            facility=self.facility,
            hostname=self.hostname,
            app_name=self.app_name,
            procid=self.procid,
            limit=self.limit,
            gateway=self.gateway,
        )

    def _connect(self, kind: socket.SocketKind) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=kind)
        except OSError as exc:
            raise SinkError(f"cannot resolve {self.host}: {exc.strerror}", retry=True) from None
        error: OSError | None = None
        for family, type_, proto, _, addr in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.settimeout(self.timeout)
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        reason = (error.strerror or type(error).__name__) if error is not None else "no address"
        raise SinkError(f"cannot connect: {reason}", retry=True)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class SyslogUdpSink(_SyslogSink):
    """One datagram per event (RFC 5426), at most :data:`UDP_MAX` bytes. Fire and forget: what the
    network loses is not known; an error the system reports (port unreachable) fails the batch's rest."""

    batch_max = 256

    def send(self, batch: Sequence[Item]) -> None:
        if self._sock is None:
            self._sock = self._connect(socket.SOCK_DGRAM)
        for i, item in enumerate(batch):
            try:
                self._sock.send(self.message(item))
            except OSError as exc:
                self.close()
                raise SinkError(
                    f"send failed: {exc.strerror or type(exc).__name__}", retry=False, sent=i
                ) from None


class SyslogTcpSink(_SyslogSink):
    """Octet-counted messages (RFC 6587 ``LEN SP MSG``) over one TCP connection, reconnected when it
    fails; a failed batch is sent again whole (the receiver may see an event twice: same seq and hash)."""

    batch_max = 500
    limit = TCP_MAX

    def _peer_closed(self, sock: socket.socket) -> bool:
        """Whether the receiver closed the connection (a syslog receiver never sends anything)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def send(self, batch: Sequence[Item]) -> None:
        if self._sock is not None and self._peer_closed(self._sock):
            self.close()
        if self._sock is None:
            self._sock = self._connect(socket.SOCK_STREAM)
        frames = []
        for item in batch:
            message = self.message(item)
            frames.append(b"%d " % len(message))
            frames.append(message)
        try:
            self._sock.sendall(b"".join(frames))
        except OSError as exc:
            self.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
            raise SinkError(f"send failed: {reason}", retry=True) from None


class HttpSink(Sink):
    """POSTs batches of lines as ``application/x-ndjson`` (with a bearer token when set); 2xx is
    delivered; connection errors, timeouts, 408, 429, 5xx and 401/403 (the token is read again) are
    retried; any other answer loses the batch."""

    batch_max = 500
    linger = 0.2

    def __init__(
        self, name: str, url: str, *, token: str | None, token_source: SecretRef | None, timeout: float
    ) -> None:
        super().__init__(name)
        self.url, self.timeout = url, timeout
        self._token = token
        self._token_source = token_source
        self._client: httpx.Client | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/x-ndjson"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def send(self, batch: Sequence[Item]) -> None:
        if self._client is None:
            self._client = httpx.Client(
                trust_env=False,  # no proxy or netrc from the environment
                follow_redirects=False,
                timeout=self.timeout,
                headers={"User-Agent": f"hoopgw/{__version__}"},
            )
        try:
            # stream: the answer's status is all that matters; its body is never read
            with self._client.stream("POST", self.url, content=_lines(batch), headers=self._headers()) as r:
                status = r.status_code
        except httpx.HTTPError as exc:
            raise SinkError(type(exc).__name__, retry=True) from None  # never str(exc): it may hold the URL
        if 200 <= status < 300:
            return
        if status in (401, 403):
            self._reread_token()
        retry = status in (401, 403, 408, 429) or status >= 500
        raise SinkError(f"HTTP {status}", retry=retry)

    def _reread_token(self) -> None:
        if self._token_source is not None:
            with contextlib.suppress(SecretError):  # keep the token we had; the failure is counted anyway
                self._token = self._token_source.resolve().strip()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def http_name(url: str) -> str:
    """What an HTTP sink is called in logs and events: the URL's host only (a path or query may be a
    credential)."""
    return f"http ({urlsplit(url).hostname})"
