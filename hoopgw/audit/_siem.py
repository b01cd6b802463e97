"""SIEM streaming: every committed audit event (and checkpoint) as one JSON line to each ``[[audit.siem]]``.

:meth:`SiemStreamer.offer` is an ``AuditWriter`` commit listener: it runs in the writer thread and only
appends to one bounded queue per sink, dropping (and counting) what does not fit, so a slow or dead SIEM
never slows the audit trail or the data path. One thread per sink takes batches off its queue, formats
them and delivers them (sinks: ``hoopgw.audit._siem_sinks``), retrying with backoff where a retry can
help. A reporter thread records the counts into the audit trail itself, at most once per sink and
``report_interval``: ``siem_overflow`` (events dropped because the queue was full) and ``siem_error``
(failed deliveries). Those events are streamed like any other; each report is one event, so a sink that
keeps failing adds one event per interval, not a loop.

At shutdown the gateway calls :meth:`~SiemStreamer.report` (the last counts go into the trail), closes the
writer (its last events and final checkpoint are offered), then :meth:`~SiemStreamer.stop`, which sends
what is queued for a bounded time; what is left then is only logged (the trail is closed).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hoopgw import log
from hoopgw.audit._siem_sinks import (
    FileSink,
    HttpSink,
    Item,
    Sink,
    SinkError,
    StdoutSink,
    SyslogTcpSink,
    SyslogUdpSink,
    http_name,
    json_line,
)
from hoopgw.audit._writer import Committed
from hoopgw.config import AuditConfig, SiemConfig
from hoopgw.config._upstream import check_http_url
from hoopgw.errors import HoopError, SecretError, StoreError

_logger = log.get_logger("hoopgw.audit.siem")
#: how often (at most) the counts of each sink are recorded as events
REPORT_S = 10.0
#: how long stop() sends what is queued
DRAIN_S = 2.0
#: retry backoff: the first wait, doubling up to the cap
BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0


class EventSink(Protocol):
    """Where the streamer records its counts: ``AuditWriter.event``."""

    def event(self, session_id: str | None, kind: str, payload: dict[str, Any]) -> None: ...


@dataclass
class _Counts:
    sent: int = 0
    #: events given up after a failed delivery (a sink that does not retry, or an answer that will not change)
    failed: int = 0
    #: events that did not fit in the queue (or were still queued when stop() gave up)
    dropped: int = 0
    #: failed delivery attempts (each retry counts)
    errors: int = 0


class _Worker:
    """One sink: its bounded queue, its thread and its counters."""

    def __init__(self, sink: Sink, kinds: Sequence[str], queue: int, gateway: str) -> None:
        self.sink = sink
        self.name = sink.name
        self._kinds = None if "*" in kinds else frozenset(kinds)
        self._max = queue
        self._gateway = gateway
        self._cond = threading.Condition()
        self._items: deque[Committed] = deque()
        self._counts = _Counts()
        self._reported = _Counts()  # the counts already recorded in the trail
        self._last_error = ""
        self._failing = False
        self._stopping = False
        self._deadline = float("inf")
        self._abandoned = 0  # the batch given up when stop() ran out of time
        self._thread = threading.Thread(target=self._run, name=f"hoopgw-siem {self.name}", daemon=True)

    # -- the writer thread ------------------------------------------------------------------------

    def offer(self, events: list[Committed]) -> None:
        kinds = self._kinds
        chosen = events if kinds is None else [e for e in events if e[3] in kinds]
        if not chosen:
            return
        first = False
        with self._cond:
            room = self._max - len(self._items)
            if room >= len(chosen):
                self._items.extend(chosen)
            else:
                if room > 0:
                    self._items.extend(chosen[:room])
                first = self._counts.dropped == self._reported.dropped
                self._counts.dropped += len(chosen) - max(0, room)
            self._cond.notify()
        if first:  # once per report interval; the report says how many
            _logger.warning("siem_queue_full", sink=self.name, queue=self._max)

    # -- control ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float) -> None:
        with self._cond:
            self._stopping = True
            self._deadline = deadline
            self._cond.notify()

    def join(self, deadline: float) -> None:
        if self._thread.ident is None:  # never started: nothing was sent
            self.sink.close()
        elif self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            left = len(self._items)
            self._items.clear()
            self._counts.dropped += left
            left += self._abandoned
            alive = self._thread.is_alive()
        if left or alive:
            _logger.warning("siem_events_not_sent_at_shutdown", sink=self.name, dropped=left, stuck=alive)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            c = self._counts
            return {
                "sink": self.name,
                "queued": len(self._items),
                "sent": c.sent,
                "failed": c.failed,
                "dropped": c.dropped,
                "errors": c.errors,
                "last_error": self._last_error or None,
            }

    def unreported(self) -> tuple[int, int, int, str]:
        """(dropped, failed, errors) since the last call, and the last error; marks them reported."""
        with self._cond:
            c, r = self._counts, self._reported
            out = (c.dropped - r.dropped, c.failed - r.failed, c.errors - r.errors, self._last_error)
            r.dropped, r.failed, r.errors = c.dropped, c.failed, c.errors
            return out

    # -- the worker thread ------------------------------------------------------------------------

    def _take(self) -> list[Committed] | None:
        """The next batch, waiting for events; None when stopping and done (or out of time)."""
        sink = self.sink
        with self._cond:
            while not self._items:
                if self._stopping:
                    return None
                self._cond.wait()
            if sink.linger and len(self._items) < sink.batch_max and not self._stopping:
                until = time.monotonic() + sink.linger
                while len(self._items) < sink.batch_max and not self._stopping:
                    remaining = until - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            if time.monotonic() >= self._deadline:
                return None
            events: list[Committed] = []
            size = 0
            while self._items and len(events) < sink.batch_max and size < sink.batch_bytes:
                event = self._items.popleft()
                events.append(event)
                size += len(event[4]) + 200  # about: the line around data
        return events

    def _wait(self, seconds: float) -> bool:
        """Back off ``seconds`` (cut short by the stop deadline); False when the deadline passed."""
        until = time.monotonic() + seconds
        with self._cond:
            while (remaining := min(until, self._deadline) - time.monotonic()) > 0:
                self._cond.wait(remaining)
            return time.monotonic() < self._deadline

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            try:
                self.sink.close()
            except Exception as exc:  # closing must not raise out of the thread
                _logger.warning("siem_close_failed", sink=self.name, error=type(exc).__name__)

    def _loop(self) -> None:
        batch: list[Item] = []
        backoff = BACKOFF_S
        while True:
            if not batch:
                taken = self._take()
                if taken is None:
                    return
                try:
                    batch = [(e, json_line(e, self._gateway)) for e in taken]
                except Exception as exc:  # no event may stop the stream: count them and go on
                    self._failed(f"cannot format: {type(exc).__name__}", 0, len(taken))
                    continue
            try:
                self.sink.send(batch)
            except SinkError as exc:
                sent, rest = exc.sent, batch[exc.sent :]
                self._failed(str(exc), sent, 0 if exc.retry else len(rest))
                if not exc.retry:
                    batch = []
                    continue
                batch = rest
                if not self._wait(backoff):  # stopping, and the time is up: the batch is not sent
                    with self._cond:
                        self._counts.dropped += len(batch)
                        self._abandoned = len(batch)
                    return
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            except Exception as exc:  # a bug in a sink must not end the stream: count the batch as failed
                # the type only: a message or traceback might hold an http sink's URL
                _logger.error("siem_sink_crashed", sink=self.name, error=type(exc).__name__)  # noqa: TRY400
                self._failed(type(exc).__name__, 0, len(batch))
                batch = []
            else:
                self._sent(len(batch))
                batch = []
                backoff = BACKOFF_S

    def _sent(self, n: int) -> None:
        with self._cond:
            self._counts.sent += n
            recovered, self._failing = self._failing, False
        if recovered:
            _logger.info("siem_sink_recovered", sink=self.name)

    def _failed(self, error: str, sent: int, failed: int) -> None:
        with self._cond:
            c = self._counts
            c.sent += sent
            c.failed += failed
            c.errors += 1
            self._last_error = error
            first, self._failing = not self._failing, True
        if first:
            _logger.warning("siem_sink_failing", sink=self.name, error=error)


class SiemStreamer:
    """Streams committed audit events to the configured sinks (see the module docstring).

    Register :meth:`offer` with ``AuditWriter.add_listener``; :meth:`start` the threads; at shutdown
    :meth:`report`, close the writer, then :meth:`stop`.
    """

    def __init__(
        self, workers: Sequence[_Worker], writer: EventSink | None, report_interval: float = REPORT_S
    ) -> None:
        self._workers = list(workers)
        self._writer = writer
        self._interval = report_interval
        self._stop_reports = threading.Event()
        self._reporter = threading.Thread(target=self._report_loop, name="hoopgw-siem-report", daemon=True)
        self._started = False
        self._report_lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        config: AuditConfig,
        *,
        writer: EventSink | None,
        report_interval: float = REPORT_S,
        gateway: str | None = None,
    ) -> SiemStreamer:
        """Sinks for ``[[audit.siem]]``; references are read and files opened now (HoopError if not)."""
        host = gateway if gateway is not None else socket.gethostname()
        workers = [
            _Worker(build_sink(i, sink, host), sink.kinds, sink.queue, host)
            for i, sink in enumerate(config.siem)
        ]
        return cls(workers, writer, report_interval)

    @property
    def sinks(self) -> list[str]:
        """The sinks' names (as logs, counters and events show them)."""
        return [w.name for w in self._workers]

    def offer(self, events: list[Committed]) -> None:
        """The commit listener: queue ``events`` for every sink that takes their kind; never blocks."""
        for worker in self._workers:
            worker.offer(events)

    def start(self) -> None:
        """Start one thread per sink and the reporter."""
        if self._started:
            return
        self._started = True
        for worker in self._workers:
            worker.start()
        self._reporter.start()

    def stats(self) -> list[dict[str, Any]]:
        """Per sink: ``sink``, ``queued``, ``sent``, ``failed``, ``dropped``, ``errors``, ``last_error``."""
        return [w.stats() for w in self._workers]

    def report(self) -> None:
        """Record what was dropped or failed since the last report as ``siem_overflow`` / ``siem_error``
        events (one of each per sink at most), and log it."""
        with self._report_lock:
            for worker in self._workers:
                dropped, failed, errors, last = worker.unreported()
                if dropped:
                    _logger.warning("siem_overflow", sink=worker.name, dropped=dropped)
                    self._record("siem_overflow", {"sink": worker.name, "dropped": dropped})
                if failed or errors:
                    _logger.warning("siem_error", sink=worker.name, failed=failed, errors=errors, error=last)
                    self._record(
                        "siem_error", {"sink": worker.name, "failed": failed, "errors": errors, "error": last}
                    )

    def _record(self, kind: str, payload: dict[str, Any]) -> None:
        if self._writer is None:
            return
        try:
            self._writer.event(None, kind, payload)
        except StoreError:
            _logger.warning("siem_count_not_recorded", kind=kind, **payload)  # the writer is closed

    def _report_loop(self) -> None:
        while not self._stop_reports.wait(self._interval):
            self.report()

    def stop(self, drain_s: float = DRAIN_S) -> None:
        """Send what is queued for at most ``drain_s`` seconds, then stop every thread (the writer is
        closed by now: counts after the last :meth:`report` are only logged)."""
        self._stop_reports.set()
        if self._reporter.is_alive():
            self._reporter.join()
        deadline = time.monotonic() + drain_s
        for worker in self._workers:
            worker.stop(deadline)
        for worker in self._workers:
            worker.join(deadline)
        for stats in self.stats():
            _logger.info("siem_stopped", **stats)


def build_sink(index: int, config: SiemConfig, gateway: str) -> Sink:
    """The sink of ``[[audit.siem]]`` entry ``index``; HoopError when a reference or the file is unusable."""
    prefix = f"siem[{index}] "
    if config.type == "file":
        assert config.path is not None  # the config model requires it
        try:
            return FileSink(prefix + f"file {config.path}", str(config.path))
        except OSError as exc:
            raise StoreError(f"audit.siem[{index}]: cannot open {config.path}: {exc.strerror}") from None
    if config.type == "stdout":
        return StdoutSink(prefix + "stdout")
    if config.type == "syslog":
        assert config.address is not None
        scheme, _, rest = config.address.partition("://")
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        cls = SyslogUdpSink if scheme == "udp" else SyslogTcpSink
        return cls(
            prefix + f"syslog {config.address}",
            host,
            int(port),
            facility=config.facility,
            app_name=config.app_name,
            timeout=config.timeout,
            gateway=gateway,
        )
    url = resolve_url(config, index)
    token = config.token.resolve().strip() if config.token is not None else None
    return HttpSink(
        prefix + http_name(url), url, token=token, token_source=config.token, timeout=config.timeout
    )


def resolve_url(config: SiemConfig, index: int) -> str:
    """An http sink's URL (a reference is read now); SecretError naming only the reference."""
    url = config.url
    if isinstance(url, str):
        return url
    if url is None:
        raise HoopError(f"audit.siem[{index}]: an http sink needs url")
    value = url.resolve().strip()
    try:
        return check_http_url(value)
    except ValueError:  # PydanticCustomError is a ValueError
        raise SecretError(f"{url.reference}: not an http(s) URL without credentials") from None
