"""Base of the small synchronous stores that share the gateway's audit store (API keys, approvals).

Each store has its own connection to the store (``data_dir/audit.db``, or the PostgreSQL database of
``[audit] store``; opened on first use, migrations applied), lets one caller at a time use it, and turns
every database error into a ``StoreError`` naming what the store holds. Writes are durable when a call
returns (SQLite: WAL, ``synchronous = FULL``; PostgreSQL: a committed transaction).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from hoopgw.audit._db import DB_ERRORS, Db, Store, as_store
from hoopgw.errors import StoreError


class SqliteTables:
    """A lazily opened, locked connection to the store; ``what`` names the tables in errors.

    ``where`` is a :class:`Store` or, for the embedded store, the data directory. (The name is
    historical: the store may be PostgreSQL.)
    """

    def __init__(self, where: Path | Store, what: str) -> None:
        self.store = as_store(where)
        self.path = self.store.path
        self._what = what
        self._lock = threading.Lock()
        self._conn: Db | None = None

    @contextlib.contextmanager
    def _use(self) -> Iterator[Db]:
        """The connection (created with the store if needed), held for the block."""
        with self._lock, self._errors():
            if self._conn is None:
                self._conn = self.store.connect(create=True)
            yield self._conn

    @contextlib.contextmanager
    def _peek(self) -> Iterator[Db | None]:
        """Like :meth:`_use`, but None instead of creating a store that does not exist yet."""
        with self._lock, self._errors():
            if self._conn is None and self.store.exists():
                self._conn = self.store.connect(create=False)
            yield self._conn

    @staticmethod
    @contextlib.contextmanager
    def _immediate(conn: Db) -> Iterator[None]:
        """One write transaction, taking the store's write lock at once (no lost updates between
        processes): committed when the block ends, rolled back when it raises."""
        conn.begin_write()
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
        except DB_ERRORS as exc:
            raise StoreError(
                f"cannot use the {self._what} in {self.store.label}: {self.store.scrub(str(exc))}"
            ) from None

    def close(self) -> None:
        """Close the connection (it is reopened on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
