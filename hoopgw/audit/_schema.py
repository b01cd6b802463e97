"""The audit database: connection setup and versioned migrations (``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hoopgw.errors import StoreError

DB_FILE = "audit.db"

#: Migration N brings the schema from user_version N to N+1. Append only; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        connection TEXT NOT NULL,
        subject TEXT NOT NULL,
        groups TEXT NOT NULL,
        client_addr TEXT,
        auth TEXT,
        params TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        started_at REAL NOT NULL,
        ended_at REAL,
        close_reason TEXT,
        statements INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_started ON sessions (started_at);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        session_id TEXT,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash BLOB,
        hash BLOB
    );
    CREATE INDEX events_session ON events (session_id, seq);
    """,
    # values masked on the way to the client, per detector: a JSON object
    """
    ALTER TABLE sessions ADD COLUMN masked TEXT;
    """,
    # API keys (hoopgw.identity._keystore): only a SHA-256 of each key is kept; a name is unique among
    # the keys not revoked, so a revoked name can be reused.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash BLOB NOT NULL,
        groups TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL,
        revoked_by TEXT
    );
    CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
    """,
    # Approvals (hoopgw.approvals._store): each request and decision keeps its signed canonical record
    # (``record``); the other columns are for lookups and the request's life. Times are integer
    # milliseconds since the epoch, as in the records. ``*_owner``: the subject that created the API key
    # the requester or approver used, when known (self-approval through a key is refused).
    """
    CREATE TABLE approval_requests (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'void')),
        connection TEXT NOT NULL,
        requester TEXT NOT NULL,
        requester_owner TEXT,
        one_of_each_group INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        record TEXT NOT NULL,
        closed_at INTEGER,
        close_reason TEXT
    );
    CREATE INDEX approval_requests_status ON approval_requests (status, expires_at);
    CREATE INDEX approval_requests_created ON approval_requests (created_at);
    CREATE TABLE approval_decisions (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES approval_requests (id),
        approver TEXT NOT NULL,
        approver_owner TEXT,
        decision TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
        decided_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX approval_decisions_request ON approval_decisions (request_id, decided_at);
    """,
    # Prompt provenance (issue 6): registered AI prompts (text masked before storage) and the prompt
    # id each event carries (a tag as given: ``prompt_known``, judged when read, says whether it names a
    # registered one). A session's own tag (from application_name) is ``params.prompt_id``; approval
    # requests carry theirs in the signed record: both indexed for ``hoopgw prompts show``.
    """
    CREATE TABLE prompts (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        subject TEXT NOT NULL,
        auth TEXT NOT NULL,
        assistant TEXT,
        model TEXT,
        human TEXT,
        prompt TEXT NOT NULL,
        generated_code TEXT
    );
    CREATE INDEX prompts_created ON prompts (created_at);
    ALTER TABLE events ADD COLUMN prompt_id TEXT;
    CREATE INDEX events_prompt ON events (prompt_id, seq) WHERE prompt_id IS NOT NULL;
    CREATE INDEX sessions_prompt ON sessions (json_extract(params, '$.prompt_id'))
        WHERE json_extract(params, '$.prompt_id') IS NOT NULL;
    CREATE INDEX approval_requests_prompt ON approval_requests (json_extract(record, '$.prompt_id'))
        WHERE json_extract(record, '$.prompt_id') IS NOT NULL;
    """,
    # Tamper evidence (issue 6): signed checkpoints of the event hash chain. ``seq``: the last event
    # covered; ``hash``: the chain head there; ``record``: the signed canonical checkpoint record.
    """
    CREATE TABLE checkpoints (
        seq INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        hash BLOB NOT NULL,
        events INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    """,
    # Retention (issue 6, docs/AUDIT.md "Retention and legal hold"): legal holds, one row per hold
    # (released ones kept: who set and lifted it, when, why), at most one active per session; and one
    # row per purge, ``record`` its signed canonical ``audit_purge`` record (``cut``: events up to
    # this seq are deleted; ``deleted`` / ``tombstoned``: what this purge did).
    """
    CREATE TABLE legal_holds (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL,
        reason TEXT NOT NULL,
        released_by TEXT,
        released_at REAL
    );
    CREATE UNIQUE INDEX legal_holds_active ON legal_holds (session_id) WHERE released_at IS NULL;
    CREATE TABLE purges (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        cut INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        tombstoned INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open the database at ``path`` (WAL, migrated to the current schema); raises StoreError."""
    if create:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the audit store directory {path.parent}: {exc.strerror}"
            ) from None
    elif not path.exists():
        raise StoreError(f"no audit store at {path}")
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA busy_timeout = 10000")
        _wal(conn, path)
        conn.execute("PRAGMA synchronous = FULL")
        _migrate(conn, path)
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"cannot open the audit store {path}: {exc}") from None
    except StoreError:
        if conn is not None:
            conn.close()
        raise
    return conn


def _wal(conn: sqlite3.Connection, path: Path) -> None:
    if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
        raise StoreError(f"cannot open the audit store {path}: WAL journal mode unavailable")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the audit store {path} has schema version {version}, newer than this hoopgw ({SCHEMA_VERSION})"
        )
    for number in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] != number:
                conn.execute("ROLLBACK")
                continue
            for stmt in MIGRATIONS[number].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
