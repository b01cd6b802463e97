"""AuditWriter: one background thread appends events in order, group-committed within a bounded delay.

The thread also extends the hash chain as it inserts (each row's ``prev_hash`` and ``hash``, see
``_chain``) and seals it with a signed checkpoint every ``checkpoint_every`` events or
``checkpoint_interval`` seconds, and when it closes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw import log
from hoopgw.audit._chain import GENESIS, HASH_HEADER, HASH_TAG, NULL_LENGTH, record_json, sign_checkpoint
from hoopgw.audit._db import DB_ERRORS, PgDb, Store, as_store
from hoopgw.audit._ids import new_session_id
from hoopgw.audit._limit import EventBudget
from hoopgw.audit._prompt import statement_prompt
from hoopgw.audit._secrets import redact_params, redact_sql
from hoopgw.errors import StoreError

_logger = log.get_logger("hoopgw.audit")
_EPOCH_NS_FLOOR = 10**18  # now_ns values above this are wall-clock (time.time_ns), not monotonic
#: Event rows per INSERT statement. Each execute releases the GIL once (sqlite3_step), so batching rows
#: cuts the writer thread's GIL hand-offs with the event loop; small enough that the thread never holds
#: the GIL for long between two releases.
_ROWS_PER_INSERT = 32
_COLUMNS = 8
_INSERT_EVENTS = "INSERT INTO events (seq, ts, session_id, kind, data, prompt_id, prev_hash, hash) VALUES "
_ROW_SQL = "(" + ", ".join(["?"] * _COLUMNS) + ")"
_INSERT_SQL: dict[int, str] = {}
#: A PostgreSQL store takes event rows by binary COPY (in the transaction), this many at a time.
_ROWS_PER_COPY = 1000
_COPY_EVENTS = (
    "COPY events (seq, ts, session_id, kind, data, prompt_id, prev_hash, hash) FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ("int8", "float8", "text", "text", "text", "text", "bytea", "bytea")
_pack_header = HASH_HEADER.pack
#: what fails a batch (a record of the wrong shape fails alone when the batch is retried one by one)
_WRITE_ERRORS: tuple[type[Exception], ...] = (
    *DB_ERRORS,
    StoreError,
    AttributeError,
    TypeError,
    ValueError,
)
_sha256 = hashlib.sha256


class Statement(Protocol):
    """What the writer reads from a statement: the attributes of ``hoopgw._core.Statement``."""

    @property
    def kind(self) -> str: ...
    @property
    def sql(self) -> str: ...
    @property
    def statement_name(self) -> str | None: ...
    @property
    def portal(self) -> str | None: ...
    @property
    def params(self) -> list[str | None] | None: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def rows(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def error(self) -> tuple[str, str] | None: ...
    @property
    def started_ns(self) -> int: ...
    @property
    def ended_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What is known about a session when it opens."""

    id: str
    type: str
    connection: str
    subject: str
    groups: frozenset[str] | list[str] | tuple[str, ...]
    client_addr: str | None
    auth: str | None
    params: dict[str, Any] = field(default_factory=dict)


#: A committed event as listeners get it: (seq, ts, session_id, kind, data as JSON text, prompt_id,
#: hash). Checkpoints come as kind ``audit_checkpoint`` with the signed record as data and the head's
#: hash, after the events they seal.
Committed = tuple[int, float, str | None, str, str, str | None, bytes]
#: Called in the writer thread after each commit with what it committed, in order; must not block.
CommitListener = Callable[[list[Committed]], None]

#: Told in the writer thread whether intents are durable: None once committed, else why they are not.
Durable = Callable[[str | None], None]

# Queue items: (op, session_id, ts, payload, prompt_id); op is "open", "event", "stmt", "close",
# "intent". For "stmt" the payload is the Statement itself and ts the enqueue time (converted in the
# writer thread); for "intent" it is (statements, done), or ((kind, data), done) for a durable event.
_Item = tuple[str, str | None, float, Any, str | None]


def intent_data(stmt: Statement) -> dict[str, Any]:
    """The JSON payload of a "statement_intent" event: what the client asked for, before it runs
    (passwords in the SQL and the parameters it uses as passwords redacted)."""
    sql = stmt.sql
    return {
        "kind": stmt.kind,
        "sql": redact_sql(sql),
        "statement_name": stmt.statement_name,
        "portal": stmt.portal,
        "params": redact_params(sql, stmt.params),
    }


def statement_data(stmt: Statement) -> dict[str, Any]:
    """The JSON payload of a "statement" event (attributes read duck-typed from ``_core.Statement``).

    ``preview`` (the first rows of the result as the client got them, masked) is there only when
    the statement returned rows and previews are on; a statement object without the attribute has none.
    """
    error = stmt.error
    started, ended = int(stmt.started_ns), int(stmt.ended_ns)
    sql = stmt.sql
    data: dict[str, Any] = {
        "kind": stmt.kind,
        "sql": redact_sql(sql),
        "statement_name": stmt.statement_name,
        "portal": stmt.portal,
        "params": redact_params(sql, stmt.params),
        "tags": list(stmt.tags),
        "rows": int(stmt.rows),
        "status": stmt.status,
        "error": {"sqlstate": error[0], "message": error[1]} if error else None,
        "duration_ms": round(max(0, ended - started) / 1e6, 3),
    }
    preview = getattr(stmt, "preview", None)
    if preview is not None:
        columns, rows = preview
        data["preview"] = {"columns": columns, "rows": rows}
    return data


class AuditWriter:
    """Appends audit records from the event loop without blocking it.

    Calls only enqueue; a thread writes batches in one transaction, committing at most every
    ``flush_interval`` seconds (sooner when ``batch_size`` items wait). Statement and event records
    beyond ``max_queue`` are dropped and counted, and an ``audit_overflow`` event records how many.
    Session open/close records are never dropped.

    Every event row is chained (docs/AUDIT.md); a checkpoint signed with ``signing_key`` (default:
    the gateway's key in the store's directory) seals the chain at least every ``checkpoint_every``
    events, ``checkpoint_interval`` seconds after the first event it has not sealed, and on close.
    """

    def __init__(
        self,
        store_path: Path | Store,
        flush_interval: float = 0.2,
        *,
        max_queue: int = 100_000,
        batch_size: int = 2_000,
        signing_key: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
    ) -> None:
        #: the store: a SQLite file (``store_path`` a directory or a ``*.db`` file) or a PostgreSQL one
        self.store = store = as_store(store_path)
        self.path = store.path
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._conn = store.connect(create=True)
        self._pg = self._conn if isinstance(self._conn, PgDb) else None  # rows go by COPY
        #: flattened row values that make one INSERT (SQLite) or COPY (PostgreSQL)
        self._flush_at = (_ROWS_PER_COPY if self._pg is not None else _ROWS_PER_INSERT) * _COLUMNS
        #: the SQLite file as opened (device, inode): a store deleted or replaced under the gateway
        #: must fail writes, not swallow them into a file nobody will read
        self._file_id: tuple[int, int] | None = None
        if self._pg is None:
            # Multi-row INSERTs open a statement journal; keep it in memory, not in a temp file.
            self._conn.execute("PRAGMA temp_store = MEMORY")
            st = os.stat(self.path)
            self._file_id = (st.st_dev, st.st_ino)
        if signing_key is None:
            from hoopgw.approvals._signing import load_signing_key  # approvals imports audit: not at the top

            signing_key = load_signing_key(store.data_dir)
        self._key = signing_key
        # The chain, writer thread only: the head (last seq and its hash, re-read in each transaction),
        # the seq before the chain's first event (counts run from it), the last checkpoint.
        self._seq = 0
        self._head = GENESIS
        self._base = 0
        self._chained = False
        self._cp_seq = 0
        self._cp_time = time.time()
        self._tx_cp_seq = 0  # the last checkpoint, counting those of the open transaction
        self._tx_sealed: list[tuple[int, float]] = []  # checkpoints of the open transaction
        self._load_chain()
        self._read_head()  # a tail a previous run left unsealed gets its checkpoint in time too
        self.checkpoints_total = 0
        self._cond = threading.Condition()
        self._items: deque[_Item] = deque()
        self._dropped = 0
        self._urgent = 0  # intents queued: commit them now, not after flush_interval
        self._closing = False
        self._enqueued = 0
        self._committed = 0
        self._rows: list[Any] = []  # writer thread only: flattened event rows not yet inserted
        self._listeners: list[CommitListener] = []
        self._tx_events: list[Committed] = []  # writer thread only: the open transaction's (listeners)
        self.auth_budget = EventBudget()
        self.dropped_total = 0
        self.written_total = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._run, name="hoopgw-audit-writer", daemon=True)
        self._thread.start()

    # ---- called from the event loop (never block) ----------------------------------------------

    new_session_id = staticmethod(new_session_id)

    def session_open(self, info: SessionInfo) -> None:
        """Record a new session."""
        self._put(("open", info.id, time.time(), info, None), droppable=False)

    def statement(self, session_id: str, stmt: Statement, prompt_id: str | None = None) -> None:
        """Record one completed statement, with the session's prompt id, if any (a leading
        ``/* hoop:prompt=<id> */`` comment in the statement wins; parsed in the writer thread).

        Only enqueues: the attributes are read (``statement_data``) in the writer thread, so
        ``stmt`` must not change afterwards (``_core.Statement`` is immutable).
        """
        self._put(("stmt", session_id, time.time(), stmt, prompt_id), droppable=True)

    def intents(
        self,
        session_id: str,
        statements: list[Any],
        prompt_id: str | None,
        done: Durable,
        *,
        urgent: bool = True,
    ) -> None:
        """Write-ahead: record ``statements`` (``_core.Statement`` intents, not run yet) as
        ``statement_intent`` events, and call ``done(None)`` in the writer thread once they are
        committed (SQLite ``synchronous = FULL``, a PostgreSQL COMMIT: durable), or ``done(reason)``
        if they cannot be written.

        ``urgent``: commit now, in a transaction of its own or with whatever else is queued (group
        commit across sessions); else with the next commit, within the flush interval. Never dropped
        for a full queue; a closed writer raises StoreError.
        """
        item = ("intent", session_id, time.time(), (statements, done), prompt_id)
        self._put(item, droppable=False, urgent=urgent)

    def durable_event(
        self,
        session_id: str | None,
        kind: str,
        payload: dict[str, Any],
        prompt_id: str | None,
        done: Durable,
    ) -> None:
        """Write-ahead for anything that is not SQL (an SSH exec request, a file transfer): record the
        event now, in a transaction of its own or with whatever else is queued, and call ``done(None)``
        in the writer thread once it is committed, or ``done(reason)`` if it cannot be written. Never
        dropped for a full queue; a closed writer raises StoreError."""
        item = ("intent", session_id, time.time(), ((kind, payload), done), prompt_id)
        self._put(item, droppable=False, urgent=True)

    def event(
        self, session_id: str | None, kind: str, payload: dict[str, Any], prompt_id: str | None = None
    ) -> None:
        """Record any other event (``payload`` must be JSON-serialisable), with its prompt id, if any.

        ``auth_failed`` events, which anyone can cause, are budgeted per client host (see
        ``EventBudget``): beyond the budget they are counted, and the next one recorded carries
        ``suppressed``, the number left out before it.
        """
        if kind == "auth_failed":
            addr = str(payload.get("client_addr") or "")
            host = addr.rsplit(":", 1)[0] if ":" in addr else addr
            suppressed = self.auth_budget.admit(host)
            if suppressed is None:
                return
            if suppressed:
                payload = {**payload, "suppressed": suppressed}
        self._put(("event", session_id, time.time(), (kind, payload), prompt_id), droppable=True)

    def session_close(
        self, session_id: str, reason: str | None, masked: dict[str, int] | None = None
    ) -> None:
        """Record the end of a session, with its counts of masked values per detector."""
        self._put(("close", session_id, time.time(), (reason, masked or {}), None), droppable=False)

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` in the writer thread after each commit with the events committed (and
        the checkpoints, as ``audit_checkpoint`` events), in chain order. It must return at once
        (hand the events to a bounded queue); an exception it raises is logged and ignored."""
        self._listeners.append(listener)

    def _put(self, item: _Item, *, droppable: bool, urgent: bool = False) -> None:
        with self._cond:
            if self._closing:
                raise StoreError("the audit writer is closed")
            if droppable and len(self._items) >= self.max_queue:
                self._dropped += 1
                self.dropped_total += 1
                if self._dropped == 1:
                    self._cond.notify()
                return
            self._items.append(item)
            self._enqueued += 1
            n = len(self._items)
            if urgent:
                self._urgent += 1
                if self._urgent == 1:
                    self._cond.notify()
            elif n == 1 or n >= self.batch_size:
                self._cond.notify()

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Records waiting to be written."""
        return len(self._items)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything enqueued so far is committed (not for the event loop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            self._cond.notify_all()
            while self._committed < target and self._thread.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return self._committed >= target

    def close(self) -> None:
        """Write everything still queued, then stop the thread and close the database."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        self._conn.close()

    # ---- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        last_commit = 0.0
        while True:
            with self._cond:
                while not self._items and not self._dropped and not self._closing:
                    due = self._checkpoint_due_in()
                    if due is not None and due <= 0:
                        break
                    self._cond.wait(due)
                pending = bool(self._items or self._dropped)
                while (
                    pending and not self._closing and not self._urgent and len(self._items) < self.batch_size
                ):
                    remaining = last_commit + self.flush_interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = list(self._items)
                self._items.clear()
                self._urgent = 0
                dropped, self._dropped = self._dropped, 0
                closing = self._closing
            if batch or dropped:
                self._write(batch, dropped)
                last_commit = time.monotonic()
            elif closing or ((due := self._checkpoint_due_in()) is not None and due <= 0):
                self._seal()
            with self._cond:
                self._committed += len(batch)
                self._cond.notify_all()
                if closing and not self._items and not self._dropped:
                    if batch or dropped:
                        self._seal()
                    return

    def _write(self, batch: list[_Item], dropped: int) -> None:
        try:
            self._transaction(batch, dropped)
        except _WRITE_ERRORS as exc:
            if len(batch) <= 1 or isinstance(exc, StoreError):  # a StoreError: no record can be written
                self.write_errors += len(batch) or 1
                error = self.store.scrub(str(exc))
                _logger.exception(
                    "audit_write_failed", records=len(batch), error=error, path=self.store.label
                )
                _tell_durable(batch, f"the audit store cannot record it: {error}")
                return
            # Keep every record that can be written: retry one by one, losing only the bad ones.
            for item in batch:
                self._write([item], 0)
            if dropped:
                self._write([], dropped)
            return
        self.written_total += len(batch)
        _tell_durable(batch, None)

    def _check_file(self) -> None:
        """StoreError when the SQLite file the writer opened is no longer at its path."""
        if self._file_id is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            raise StoreError(f"the audit store {self.path} was removed while the gateway runs") from None
        if (st.st_dev, st.st_ino) != self._file_id:
            raise StoreError(f"the audit store {self.path} was replaced while the gateway runs")

    def _transaction(self, batch: list[_Item], dropped: int) -> None:
        counts: dict[str, list[int]] = {}
        conn = self._conn
        rows = self._rows
        rows.clear()
        self._check_file()
        conn.begin_write()
        try:
            self._read_head()
            for op, session_id, ts, payload, prompt_id in batch:
                if op == "stmt":
                    data = statement_data(payload)
                    sql = data["sql"]
                    if sql[:1] == "/" or sql[:1].isspace():  # a leading comment may name its own prompt
                        prompt_id = statement_prompt(sql) or prompt_id
                    if int(payload.started_ns) >= _EPOCH_NS_FLOOR:
                        ts = int(payload.started_ns) / 1e9
                    else:
                        ts -= data["duration_ms"] / 1000
                    self._append(ts, session_id, "statement", data, prompt_id)
                    if session_id is not None:
                        c = counts.setdefault(session_id, [0, 0])
                        c[0] += 1
                        c[1] += data["status"] == "error"
                elif op == "event":
                    kind, data = payload
                    self._append(ts, session_id, kind, data, prompt_id)
                    if kind == "statement" and session_id is not None:
                        c = counts.setdefault(session_id, [0, 0])
                        c[0] += 1
                        c[1] += data.get("status") == "error"
                elif op == "intent" and isinstance(payload[0], tuple):  # durable_event
                    kind, data = payload[0]
                    self._append(ts, session_id, kind, data, prompt_id)
                elif op == "intent":
                    for stmt in payload[0]:
                        data = intent_data(stmt)
                        sql = data["sql"]
                        own = prompt_id
                        if sql[:1] == "/" or sql[:1].isspace():
                            own = statement_prompt(sql) or prompt_id
                        self._append(ts, session_id, "statement_intent", data, own)
                elif op == "open":
                    self._open(ts, payload)
                else:
                    self._flush_counts(counts)
                    self._close(ts, session_id, payload)
            self._flush_counts(counts)
            if dropped:
                self._append(time.time(), None, "audit_overflow", {"dropped": dropped})
            self._flush_rows()
            if self._seq > self._tx_cp_seq and time.time() - self._cp_time >= self.checkpoint_interval:
                self._checkpoint()
            conn.execute("COMMIT")
        except BaseException:
            rows.clear()
            self._tx_events.clear()
            conn.execute("ROLLBACK")
            raise
        self._committed_checkpoints()
        self._tell_listeners()

    def _tell_listeners(self) -> None:
        events = self._tx_events
        if not events:
            return
        self._tx_events = []
        for listener in self._listeners:
            try:
                listener(events)
            except Exception as exc:  # a listener never stops the audit trail
                _logger.warning("audit_listener_failed", error=str(exc))

    def _append(
        self, ts: float, session_id: str | None, kind: str, data: Any, prompt_id: str | None = None
    ) -> None:
        """Buffer one event row, chained to the one before; rows go to the store in multi-row INSERTs."""
        body = orjson.dumps(data)
        seq = self._seq + 1
        prev = self._head
        # event_hash, inlined: this runs for every event
        sid = b"" if session_id is None else session_id.encode()
        pid = b"" if prompt_id is None else prompt_id.encode()
        kind_b = kind.encode()
        header = _pack_header(
            HASH_TAG,
            prev,
            seq,
            ts,
            NULL_LENGTH if session_id is None else len(sid),
            len(kind_b),
            len(body),
            NULL_LENGTH if prompt_id is None else len(pid),
        )
        digest = _sha256(b"".join((header, sid, kind_b, body, pid))).digest()
        rows = self._rows
        rows += (seq, ts, session_id, kind, body.decode(), prompt_id, prev, digest)
        self._seq = seq
        self._head = digest
        if self._listeners:
            self._tx_events.append((seq, ts, session_id, kind, rows[-4], prompt_id, digest))
        if len(rows) >= self._flush_at:
            self._flush_rows()
        if seq - self._tx_cp_seq >= self.checkpoint_every:
            self._flush_rows()
            self._checkpoint()

    def _flush_rows(self) -> None:
        rows = self._rows
        if rows:
            if self._pg is not None:
                self._pg.copy_rows(_COPY_EVENTS, _COPY_TYPES, rows, _COLUMNS)
            else:
                n = len(rows) // _COLUMNS
                sql = _INSERT_SQL.get(n)
                if sql is None:
                    sql = _INSERT_SQL[n] = _INSERT_EVENTS + ", ".join([_ROW_SQL] * n)
                self._conn.execute(sql, rows)
            rows.clear()
            self._chained = True

    # ---- the chain (writer thread) ----------------------------------------------------------------

    def _load_chain(self) -> None:
        """Find where the chain stands: the last checkpoint, and where counting starts."""
        conn = self._conn
        last = conn.execute("SELECT seq, events, ts FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        if last is not None:
            self._cp_seq, self._cp_time = last[0], last[2]
            self._base = last[0] - last[1]
            self._chained = True
            return
        # no checkpoint yet: the chain starts at the first event with a hash (older ones predate it)
        first = conn.execute("SELECT seq FROM events WHERE hash IS NOT NULL ORDER BY seq LIMIT 1").fetchone()
        if first is not None:
            self._base = first[0] - 1
            self._chained = True

    def _read_head(self) -> None:
        """Read the chain's head under the write lock (a rolled-back batch leaves nothing to undo)."""
        conn = self._conn
        # another process (hoopgw audit purge, a second writer) may have sealed the chain since
        cp = conn.execute("SELECT seq, ts FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        if cp is not None and cp[0] > self._cp_seq:
            self._cp_seq, self._cp_time = cp
        self._tx_cp_seq = self._cp_seq
        self._tx_sealed.clear()
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            self._seq, self._head = 0, GENESIS
            if not self._chained:
                self._base = 0
            return
        seq, digest = row
        if digest is None:  # the newest rows predate the chain (written before it existed)
            if not self._chained:
                self._base = seq
                digest = GENESIS
            else:  # unchained rows after chained ones: link to the last chained row (verify flags them)
                last = conn.execute(
                    "SELECT hash FROM events WHERE hash IS NOT NULL ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                digest = last[0] if last is not None else GENESIS
        self._seq, self._head = seq, digest

    def _checkpoint_due_in(self) -> float | None:
        """Seconds until unsealed events need a checkpoint (None: nothing to seal)."""
        if self._seq <= self._cp_seq:
            return None
        return self._cp_time + self.checkpoint_interval - time.time()

    def _checkpoint(self) -> None:
        """Insert a signed checkpoint at the head (in the open transaction, rows flushed)."""
        now_ms = time.time_ns() // 1_000_000
        seq, events = self._seq, self._seq - self._base
        record = sign_checkpoint(
            self._key, seq=seq, digest=self._head, events=events, ts_ms=now_ms, previous=self._tx_cp_seq
        )
        self._conn.execute(
            "INSERT INTO checkpoints (seq, ts, hash, events, record) VALUES (?, ?, ?, ?, ?)",
            (seq, now_ms / 1000, self._head, events, record_json(record)),
        )
        self._tx_cp_seq = seq
        self._tx_sealed.append((seq, now_ms / 1000))
        if self._listeners:
            cp = (seq, now_ms / 1000, None, "audit_checkpoint", record_json(record), None, self._head)
            self._tx_events.append(cp)

    def _committed_checkpoints(self) -> None:
        """The open transaction committed: its checkpoints count."""
        if self._tx_sealed:
            self._cp_seq, self._cp_time = self._tx_sealed[-1]
            self.checkpoints_total += len(self._tx_sealed)
            self._tx_sealed.clear()

    def _seal(self) -> None:
        """A transaction of its own that writes a checkpoint if events are unsealed."""
        conn = self._conn
        try:
            conn.begin_write()
            try:
                self._read_head()
                if self._seq > self._cp_seq and self._chained:
                    self._checkpoint()
                conn.execute("COMMIT")
            except BaseException:
                self._tx_events.clear()
                conn.execute("ROLLBACK")
                raise
        except DB_ERRORS as exc:
            self.write_errors += 1
            error = self.store.scrub(str(exc))
            _logger.exception("audit_checkpoint_failed", error=error, path=self.store.label)
            self._cp_time = time.time()  # retry after another interval, not in a busy loop
            return
        self._committed_checkpoints()
        self._tell_listeners()

    def _open(self, ts: float, info: SessionInfo) -> None:
        groups = sorted(info.groups)
        self._conn.execute(
            "INSERT INTO sessions (id, type, connection, subject, groups, client_addr, auth, params, status,"
            " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            (
                info.id,
                info.type,
                info.connection,
                info.subject,
                orjson.dumps(groups).decode(),
                info.client_addr,
                info.auth,
                orjson.dumps(info.params).decode(),
                ts,
            ),
        )
        self._append(
            ts,
            info.id,
            "session_open",
            {
                "type": info.type,
                "connection": info.connection,
                "subject": info.subject,
                "groups": groups,
                "client_addr": info.client_addr,
                "auth": info.auth,
                "params": info.params,
            },
        )

    def _close(self, ts: float, session_id: str | None, payload: tuple[str | None, dict[str, int]]) -> None:
        reason, masked = payload
        self._conn.execute(
            "UPDATE sessions SET status = 'closed', ended_at = ?, close_reason = ?, masked = ? WHERE id = ?",
            (ts, reason, orjson.dumps(masked).decode() if masked else None, session_id),
        )
        data: dict[str, Any] = {"reason": reason}
        if masked:
            data["masked"] = masked
        self._append(ts, session_id, "session_close", data)

    def _flush_counts(self, counts: dict[str, list[int]]) -> None:
        if counts:
            self._conn.executemany(
                "UPDATE sessions SET statements = statements + ?, errors = errors + ? WHERE id = ?",
                [(n, e, sid) for sid, (n, e) in counts.items()],
            )
            counts.clear()


def _tell_durable(batch: list[_Item], error: str | None) -> None:
    """Tell the sessions whose intents are in ``batch`` that they are durable (or why not)."""
    for op, _sid, _ts, payload, _pid in batch:
        if op == "intent":
            try:
                payload[1](error)
            except Exception as exc:  # a session's callback never stops the writer
                _logger.warning("audit_intent_callback_failed", error=str(exc))
