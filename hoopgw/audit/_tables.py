"""Base of the small synchronous stores that share the gateway's SQLite file (API keys, approvals).

Each store has its own connection to ``data_dir/audit.db`` (opened on first use, migrations applied),
lets one caller at a time use it, and turns every SQLite error into a ``StoreError`` naming what the
store holds. Writes are durable when a call returns (WAL, ``synchronous = FULL``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from hoopgw.audit._schema import DB_FILE, connect
from hoopgw.errors import StoreError


class SqliteTables:
    """A lazily opened, locked connection to the store; ``what`` names the tables in errors."""

    def __init__(self, data_dir: Path, what: str) -> None:
        self.path = Path(data_dir) / DB_FILE
        self._what = what
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """The connection (created with the store if needed), held for the block."""
        with self._lock, self._errors():
            if self._conn is None:
                self._conn = connect(self.path, create=True)
            yield self._conn

    @contextlib.contextmanager
    def _peek(self) -> Iterator[sqlite3.Connection | None]:
        """Like :meth:`_use`, but None instead of creating a store that does not exist yet."""
        with self._lock, self._errors():
            if self._conn is None and self.path.exists():
                self._conn = connect(self.path, create=False)
            yield self._conn

    @staticmethod
    @contextlib.contextmanager
    def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
        """One write transaction, taking the database's write lock at once (no lost updates between
        processes): committed when the block ends, rolled back when it raises."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use the {self._what} in {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the connection (it is reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
