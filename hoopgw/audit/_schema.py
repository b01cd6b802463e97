"""The audit database: connection setup and versioned migrations, for SQLite and PostgreSQL.

SQLite keeps its schema version in ``PRAGMA user_version``; PostgreSQL in the one-row table
``hoopgw_schema``. Both run the same numbered migrations (:data:`MIGRATIONS`, and
:data:`PG_MIGRATIONS` with the same tables in PostgreSQL's types), so a version means one schema.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hoopgw.audit._db import DB_ERRORS, DB_FILE, MIGRATE_LOCK, Db, PgDb, SqliteDb, Store
from hoopgw.errors import StoreError

__all__ = ["DB_FILE", "MIGRATIONS", "PG_MIGRATIONS", "SCHEMA_VERSION", "connect"]

#: Migration N brings the schema from user_version N to N+1. Append only; never edit a shipped one.
#: Add the same change to PG_MIGRATIONS.
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
    # SSH public keys registered to people (hoopgw.identity._sshkeys, ``hoopgw ssh-keys``): ``id`` is
    # the key's SHA256 fingerprint as ssh-keygen prints it, unique among the keys not removed (a removed
    # key may be registered again; its old row stays as history). ``public_key``: the OpenSSH line
    # without its comment.
    """
    CREATE TABLE ssh_keys (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        subject TEXT NOT NULL,
        groups TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        public_key TEXT NOT NULL,
        comment TEXT NOT NULL,
        added_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL,
        revoked_by TEXT
    );
    CREATE UNIQUE INDEX ssh_keys_live ON ssh_keys (id) WHERE revoked_at IS NULL;
    """,
)
#: The same migrations for a PostgreSQL store: BLOB → bytea, REAL → double precision (``ts`` round-trips
#: exactly: the hash covers the stored double), INTEGER → bigint; ``approval_decisions.rowid`` stands in
#: for SQLite's implicit rowid (decisions are ordered by it), ``legal_holds.id`` and ``ssh_keys.seq`` are
#: identity columns.
PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id text PRIMARY KEY,
        type text NOT NULL,
        connection text NOT NULL,
        subject text NOT NULL,
        groups text NOT NULL,
        client_addr text,
        auth text,
        params text NOT NULL,
        status text NOT NULL CHECK (status IN ('open', 'closed')),
        started_at double precision NOT NULL,
        ended_at double precision,
        close_reason text,
        statements bigint NOT NULL DEFAULT 0,
        errors bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_started ON sessions (started_at);
    CREATE TABLE events (
        seq bigint PRIMARY KEY,
        ts double precision NOT NULL,
        session_id text,
        kind text NOT NULL,
        data text NOT NULL,
        prev_hash bytea,
        hash bytea
    );
    CREATE INDEX events_session ON events (session_id, seq);
    """,
    """
    ALTER TABLE sessions ADD COLUMN masked text;
    """,
    """
    CREATE TABLE api_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        hash bytea NOT NULL,
        groups text NOT NULL,
        created_by text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        revoked_at double precision,
        revoked_by text
    );
    CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;
    """,
    """
    CREATE TABLE approval_requests (
        id text PRIMARY KEY,
        status text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'void')),
        connection text NOT NULL,
        requester text NOT NULL,
        requester_owner text,
        one_of_each_group bigint NOT NULL DEFAULT 0,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        record text NOT NULL,
        closed_at bigint,
        close_reason text
    );
    CREATE INDEX approval_requests_status ON approval_requests (status, expires_at);
    CREATE INDEX approval_requests_created ON approval_requests (created_at);
    CREATE TABLE approval_decisions (
        id text PRIMARY KEY,
        request_id text NOT NULL REFERENCES approval_requests (id),
        approver text NOT NULL,
        approver_owner text,
        decision text NOT NULL CHECK (decision IN ('approve', 'deny')),
        decided_at bigint NOT NULL,
        record text NOT NULL,
        rowid bigint GENERATED ALWAYS AS IDENTITY
    );
    CREATE INDEX approval_decisions_request ON approval_decisions (request_id, decided_at);
    """,
    """
    CREATE TABLE prompts (
        id text PRIMARY KEY,
        created_at double precision NOT NULL,
        subject text NOT NULL,
        auth text NOT NULL,
        assistant text,
        model text,
        human text,
        prompt text NOT NULL,
        generated_code text
    );
    CREATE INDEX prompts_created ON prompts (created_at);
    ALTER TABLE events ADD COLUMN prompt_id text;
    CREATE INDEX events_prompt ON events (prompt_id, seq) WHERE prompt_id IS NOT NULL;
    CREATE INDEX sessions_prompt ON sessions ((params::json #>> '{prompt_id}'))
        WHERE (params::json #>> '{prompt_id}') IS NOT NULL;
    CREATE INDEX approval_requests_prompt ON approval_requests ((record::json #>> '{prompt_id}'))
        WHERE (record::json #>> '{prompt_id}') IS NOT NULL;
    """,
    """
    CREATE TABLE checkpoints (
        seq bigint PRIMARY KEY,
        ts double precision NOT NULL,
        hash bytea NOT NULL,
        events bigint NOT NULL,
        record text NOT NULL
    );
    """,
    """
    CREATE TABLE legal_holds (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        session_id text NOT NULL,
        set_by text NOT NULL,
        set_at double precision NOT NULL,
        reason text NOT NULL,
        released_by text,
        released_at double precision
    );
    CREATE UNIQUE INDEX legal_holds_active ON legal_holds (session_id) WHERE released_at IS NULL;
    CREATE TABLE purges (
        id bigint PRIMARY KEY,
        ts double precision NOT NULL,
        cut bigint NOT NULL,
        deleted bigint NOT NULL,
        tombstoned bigint NOT NULL,
        record text NOT NULL
    );
    """,
    """
    CREATE TABLE ssh_keys (
        seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        id text NOT NULL,
        subject text NOT NULL,
        groups text NOT NULL,
        algorithm text NOT NULL,
        public_key text NOT NULL,
        comment text NOT NULL,
        added_by text NOT NULL,
        created_at double precision NOT NULL,
        revoked_at double precision,
        revoked_by text
    );
    CREATE UNIQUE INDEX ssh_keys_live ON ssh_keys (id) WHERE revoked_at IS NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
assert len(PG_MIGRATIONS) == SCHEMA_VERSION, "every migration needs its PostgreSQL twin"


def connect(path: Path, *, create: bool) -> SqliteDb:
    """Open the SQLite database at ``path`` (WAL, migrated to the current schema); raises StoreError."""
    return connect_sqlite(Store.sqlite(path), create=create)


def connect_sqlite(store: Store, *, create: bool) -> SqliteDb:
    """Open ``store``'s SQLite file (WAL, ``synchronous = FULL``, migrated); raises StoreError."""
    path = store.path
    if create:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the audit store directory {path.parent}: {exc.strerror}"
            ) from None
    elif not path.exists():
        raise StoreError(f"no audit store at {path}")
    conn: SqliteDb | None = None
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0, factory=SqliteDb
        )
        conn.store = store
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


def readonly_sqlite(store: Store) -> SqliteDb:
    """Open ``store``'s SQLite file read-only, at the current schema version; raises StoreError."""
    path = store.path
    if not path.exists():
        raise StoreError(f"no audit store at {path}")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, factory=SqliteDb
        )
        conn.store = store
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the audit store {path}: {exc}") from None
    _check_version(conn, store, version)
    return conn


def connect_pg(store: Store, *, create: bool) -> PgDb:
    """Open ``store``'s PostgreSQL database, migrated (the schema created first when ``create``)."""
    db = PgDb(store)
    try:
        _migrate_pg(db, create=create)
    except DB_ERRORS as exc:
        db.close()
        raise StoreError(f"cannot open the audit store {store.label}: {store.scrub(str(exc))}") from None
    except BaseException:
        db.close()
        raise
    return db


def readonly_pg(store: Store) -> PgDb:
    """Open ``store``'s PostgreSQL database read-only, at the current schema version."""
    db = PgDb(store, readonly=True)
    try:
        version = _pg_version(db)
    except DB_ERRORS as exc:
        db.close()
        raise StoreError(f"cannot open the audit store {store.label}: {store.scrub(str(exc))}") from None
    if version is None:
        db.close()
        raise StoreError(f"no audit store in {store.label} (no hoopgw_schema table)")
    _check_version(db, store, version)
    return db


def _check_version(conn: Db, store: Store, version: int) -> None:
    if version != SCHEMA_VERSION:
        conn.close()
        why = (
            "newer than this hoopgw"
            if version > SCHEMA_VERSION
            else "older: start the gateway once to migrate"
        )
        raise StoreError(
            f"the audit store {store.label} has schema version {version}, {why} ({SCHEMA_VERSION})"
        )


def _pg_version(db: PgDb) -> int | None:
    if db.execute("SELECT to_regclass('hoopgw_schema')").fetchone()[0] is None:
        return None
    row = db.execute("SELECT version FROM hoopgw_schema").fetchone()
    return None if row is None else int(row[0])


def _migrate_pg(db: PgDb, *, create: bool) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction under :data:`MIGRATE_LOCK`
    (PostgreSQL's DDL is transactional: a failed migration leaves the version it found). The lock is
    taken before the transaction begins, so the transaction sees the catalog another node left."""
    if _pg_version(db) == SCHEMA_VERSION:
        return  # the common case: no lock
    db.execute("SELECT pg_advisory_lock(?)", (MIGRATE_LOCK,))
    try:
        _migrate_pg_locked(db, create=create)
    finally:
        db.execute("SELECT pg_advisory_unlock(?)", (MIGRATE_LOCK,))


def _migrate_pg_locked(db: PgDb, *, create: bool) -> None:
    store = db.store
    db.execute("BEGIN")
    try:
        version = _pg_version(db)  # again, under the lock: another node may have migrated meanwhile
        if version is None:
            if not create:
                raise StoreError(f"no audit store in {store.label} (no hoopgw_schema table)")  # noqa: TRY301
            db.execute("CREATE TABLE hoopgw_schema (version integer NOT NULL)")
            db.execute("INSERT INTO hoopgw_schema (version) VALUES (0)")
            version = 0
        if version > SCHEMA_VERSION:
            raise StoreError(  # noqa: TRY301
                f"the audit store {store.label} has schema version {version}, newer than this hoopgw"
                f" ({SCHEMA_VERSION})"
            )
        for number in range(version, SCHEMA_VERSION):
            for stmt in PG_MIGRATIONS[number].split(";"):
                if stmt.strip():
                    db.execute(stmt)
        db.execute("UPDATE hoopgw_schema SET version = ?", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


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
