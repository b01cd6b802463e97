"""Where the audit store lives, and the one connection interface every reader and writer uses.

:class:`Store` names a store: the SQLite file in ``data_dir`` (the embedded default) or a PostgreSQL
database (``[audit] store = "postgresql://..."``, or an ``env:``/``file:`` reference to the URL, for
several gateway nodes). ``Store.connect`` opens a :class:`Db`:

- :class:`SqliteDb` is ``sqlite3.Connection`` itself (a subclass: ``execute`` stays the C method, so the
  SQLite path does no extra work per statement);
- :class:`PgDb` wraps a psycopg 3 connection (autocommit; transactions are explicit, as with SQLite)
  and translates the SQL the stores write once (``?`` and ``:name`` placeholders, a literal ``%``).

Both add what differs between the two: :meth:`begin_write` (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a
READ COMMITTED transaction holding the advisory lock :data:`WRITE_LOCK`, so writers on every node take
turns and each reads the chain's head under it), :meth:`begin_read` (one snapshot: SQLite ``BEGIN``,
PostgreSQL REPEATABLE READ READ ONLY), :meth:`stream` (PostgreSQL: a server-side cursor, bounded
memory), and a :class:`Dialect` for JSON fields and the purge-marker test. A store's URL holds a
password: messages name the store by :attr:`Store.label` (password redacted) and pass driver errors
through :meth:`Store.scrub`.
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format
from psycopg.rows import dict_row

from hoopgw.errors import HoopError, StoreError

if TYPE_CHECKING:
    from hoopgw.config import Config
    from hoopgw.config._secrets import SecretRef

DB_FILE = "audit.db"
#: Driver errors the stores turn into StoreError.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.errors.IntegrityError)
#: ``pg_advisory_xact_lock`` key held by every PostgreSQL write transaction ("hoopgw" 0 1): like
#: SQLite's write lock, one writer at a time across every gateway node and offline command.
WRITE_LOCK = 0x686F_6F70_6777_0001
#: ... and by schema migrations, so nodes starting at once migrate once.
MIGRATE_LOCK = 0x686F_6F70_6777_0002
#: Seconds a PostgreSQL statement waits for a lock (SQLite's busy timeout is the same 10 s).
LOCK_TIMEOUT_S = 10
#: Rows per round trip of a PostgreSQL server-side cursor (:meth:`PgDb.stream`).
STREAM_ROWS = 5000
_SCHEMES = ("postgresql://", "postgres://")


# --- dialects ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL that differs between SQLite and PostgreSQL."""

    name: str
    #: a LIMIT that does not limit
    no_limit: int | None

    def json(self, column: str, path: str, cast: str | None = None) -> str:
        """The JSON text ``column``'s member ``path`` (``a.b``) as SQL; ``cast`` (``bigint``) for
        arithmetic on PostgreSQL, where the value comes out as text (SQLite keeps JSON's types)."""
        if self.name == "sqlite":
            return f"json_extract({column}, '$.{path}')"
        out = f"({column}::json #>> '{{{path.replace('.', ',')}}}')"
        return f"{out}::{cast}" if cast else out

    def purge_marker(self, column: str) -> str:
        """True when ``column`` reads like a purge marker, ``{"purged":N}`` (docs/AUDIT.md)."""
        if self.name == "sqlite":
            return f"""{column} GLOB '{{"purged":[0-9]*}}'"""
        return f"""{column} ~ '^[{{]"purged":[0-9].*[}}]$'"""


SQLITE = Dialect("sqlite", -1)
POSTGRES = Dialect("postgresql", None)


# --- the connection interface ------------------------------------------------------------------------------


class Db(Protocol):
    """What the stores use of a connection: the DB-API subset SQLite and psycopg share, and more."""

    dialect: Dialect
    store: Store
    text_factory: Any

    def execute(self, sql: str, parameters: Any = ..., /) -> Any:
        """Run one statement (``?`` placeholders) and return its cursor."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        """Run one statement for each set of parameters."""
        ...

    def cursor(self) -> Any:
        """A cursor of this connection (rows as tuples)."""
        ...

    def begin_write(self) -> None:
        """Open a write transaction holding the store's write lock."""
        ...

    def begin_read(self) -> None:
        """Open a read-only transaction on one snapshot."""
        ...

    def stream(self, sql: str, parameters: Sequence[Any] = (), *, mapping: bool = False) -> Iterator[Any]:
        """Rows of a query, fetched as they are used (``mapping``: rows as mappings)."""
        ...

    def dict_cursor(self) -> Any:
        """A cursor whose rows are mappings of column names."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class SqliteDb(sqlite3.Connection):
    """A SQLite connection with the :class:`Db` additions (``sqlite3.connect(..., factory=SqliteDb)``)."""

    dialect = SQLITE
    store: Store

    def begin_write(self) -> None:
        """``BEGIN IMMEDIATE``: the database's write lock at once."""
        self.execute("BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        """``BEGIN``: the snapshot starts at the first read."""
        self.execute("BEGIN")

    def stream(self, sql: str, parameters: Sequence[Any] = (), *, mapping: bool = False) -> Iterator[Any]:
        """SQLite cursors step as they are read."""
        if not mapping:
            return self.execute(sql, parameters)
        return self.dict_cursor().execute(sql, parameters)

    def dict_cursor(self) -> sqlite3.Cursor:
        """A cursor of ``sqlite3.Row`` rows."""
        cur = self.cursor()
        cur.row_factory = sqlite3.Row
        return cur


@functools.lru_cache(maxsize=2048)
def pg_sql(sql: str) -> str:
    """``sql`` as psycopg takes it: ``?`` → ``%s``, ``:name`` → ``%(name)s``, ``%`` → ``%%`` (string
    literals and ``::`` casts kept)."""
    return _TOKENS.sub(_pg_token, sql)


_TOKENS = re.compile(r"'(?:[^']|'')*'|::|%|\?|:([A-Za-z_][A-Za-z0-9_]*)")


def _pg_token(m: re.Match[str]) -> str:
    text = m.group()
    if text == "?":
        return "%s"
    if text == "%":
        return "%%"
    if m.group(1):
        return f"%({m.group(1)})s"
    return text.replace("%", "%%")


class _BytesLoader(Loader):
    """Text columns as the bytes stored (verification hashes them as they are)."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


class _BinaryBytesLoader(_BytesLoader):
    """The same for binary results (a text value's binary form is its bytes)."""

    format = Format.BINARY


class _NoRows:
    """The result of a ROLLBACK on a connection already lost (there is nothing to roll back)."""

    rowcount = 0

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


_cursor_names = itertools.count(1)


def _closing(cur: psycopg.Cursor[Any]) -> Iterator[Any]:
    """The rows of ``cur``, closed when they are all read or the reader stops."""
    try:
        yield from cur
    finally:
        cur.close()


class PgCursor:
    """A psycopg cursor that takes the stores' SQL (see :func:`pg_sql`)."""

    def __init__(self, db: PgDb, cur: psycopg.Cursor[Any]) -> None:
        self._db = db
        self._cur = cur

    def execute(self, sql: str, parameters: Any = ()) -> PgCursor:
        """Run ``sql``; this cursor holds its rows."""
        self._db.check_open()
        self._cur.execute(pg_sql(sql), parameters)
        return self

    def executemany(self, sql: str, parameters: Iterable[Any]) -> PgCursor:
        """Run ``sql`` for each set of parameters."""
        self._db.check_open()
        self._cur.executemany(pg_sql(sql), parameters)
        return self

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed or returned."""
        return self._cur.rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)

    def close(self) -> None:
        """Close the cursor."""
        self._cur.close()


class PgDb:
    """A PostgreSQL connection with the :class:`Db` interface (autocommit; explicit transactions).

    A connection lost between transactions is opened again at the next statement; one lost inside a
    transaction fails that transaction (its ROLLBACK is then a no-op).
    """

    dialect = POSTGRES

    def __init__(self, store: Store, *, readonly: bool = False) -> None:
        self.store = store
        self._readonly = readonly
        self._bytes = False
        self._in_tx = False
        self._raw = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        store = self.store
        url = store.url
        assert url is not None
        try:
            raw = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=10,
                application_name="hoopgw",
                client_encoding="UTF8",
            )
        except psycopg.Error as exc:
            why = store.scrub(str(exc))
            raise StoreError(f"cannot connect to the audit store {store.label}: {why}") from None
        try:
            encoding = raw.info.parameter_status("server_encoding")
            if encoding not in ("UTF8", "SQL_ASCII"):
                raise StoreError(  # noqa: TRY301
                    f"the audit store {store.label} is a database with encoding {encoding}: it needs UTF8"
                )
            # floats out exactly as stored (the hash covers ts's double); lock waits bounded as SQLite's
            raw.execute("SET extra_float_digits = 3")
            raw.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
            # a commit is what write-ahead audit waits for: durable whatever the role or database sets
            raw.execute("SET synchronous_commit = on")
            if self._readonly:
                raw.execute("SET default_transaction_read_only = on")
        except BaseException:
            raw.close()
            raise
        return raw

    # --- the Db interface ---

    @property
    def text_factory(self) -> Any:
        """``bytes``: text columns come back as the stored UTF-8 bytes; ``str`` (the default)."""
        return bytes if self._bytes else str

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        self._bytes = value is bytes

    def check_open(self) -> None:
        """Reopen a connection lost between transactions; inside one, fail (OperationalError)."""
        if self._raw.closed:
            if self._in_tx:
                raise psycopg.OperationalError("the connection to the audit store was lost")
            self._raw = self._connect()

    def _cursor(self, *, mapping: bool = False, name: str | None = None) -> psycopg.Cursor[Any]:
        raw = self._raw
        factory = dict_row if mapping else None
        if name is not None:  # binary results: about twice as fast to load (bytea, float8, int8)
            cur: psycopg.Cursor[Any] = (
                raw.cursor(name, row_factory=factory, binary=True)
                if factory
                else raw.cursor(name, binary=True)
            )
        else:
            cur = raw.cursor(row_factory=factory) if factory else raw.cursor()
        if self._bytes:
            for loader in (_BytesLoader, _BinaryBytesLoader):
                cur.adapters.register_loader("text", loader)
                cur.adapters.register_loader("varchar", loader)
        return cur

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        """Run one statement (``?`` / ``:name`` placeholders) and return its cursor."""
        if sql == "COMMIT" or sql == "ROLLBACK":
            was, self._in_tx = self._in_tx, False
            if self._raw.closed and sql == "ROLLBACK":
                return _NoRows()
            if self._raw.closed and was:
                raise psycopg.OperationalError("the connection to the audit store was lost")
        self.check_open()
        return self._cursor().execute(pg_sql(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        """Run one statement for each set of parameters (psycopg pipelines them)."""
        self.check_open()
        cur = self._cursor()
        cur.executemany(pg_sql(sql), parameters)
        return cur

    def cursor(self) -> PgCursor:
        """A cursor taking the stores' SQL."""
        self.check_open()
        return PgCursor(self, self._cursor())

    def dict_cursor(self) -> PgCursor:
        """A cursor of dict rows."""
        self.check_open()
        return PgCursor(self, self._cursor(mapping=True))

    def _begin(self, sql: str) -> None:
        self.check_open()
        self._raw.execute(sql)
        self._in_tx = True

    def begin_write(self) -> None:
        """A READ COMMITTED transaction holding :data:`WRITE_LOCK` (each statement after it sees
        every write committed before the lock was granted)."""
        self._begin("BEGIN ISOLATION LEVEL READ COMMITTED")
        try:
            self._raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        except BaseException:
            self.execute("ROLLBACK")
            raise

    def begin_read(self) -> None:
        """One snapshot for everything read until ROLLBACK."""
        self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def stream(self, sql: str, parameters: Sequence[Any] = (), *, mapping: bool = False) -> Iterator[Any]:
        """Rows through a server-side cursor, :data:`STREAM_ROWS` per round trip; inside a
        transaction (:meth:`begin_read`), which ends the cursor."""
        if not self._in_tx:  # a server-side cursor lives in a transaction: read everything at once
            return iter(self._cursor(mapping=mapping).execute(pg_sql(sql), parameters))
        cur = self._cursor(mapping=mapping, name=f"hoopgw_{next(_cursor_names)}")
        assert isinstance(cur, psycopg.ServerCursor)
        cur.itersize = STREAM_ROWS
        cur.execute(pg_sql(sql), parameters)
        return _closing(cur)

    def copy_rows(self, sql: str, types: Sequence[str], values: list[Any], width: int) -> None:
        """``COPY ... FROM STDIN (FORMAT BINARY)`` of ``values``, ``width`` of them a row (the columns'
        ``types``): in the open transaction, an order of magnitude faster than multi-row INSERTs."""
        self.check_open()
        with self._raw.cursor() as cur, cur.copy(sql) as copy:
            copy.set_types(types)
            write = copy.write_row
            for i in range(0, len(values), width):
                write(values[i : i + width])

    def close(self) -> None:
        """Close the connection."""
        self._raw.close()


# --- where the store is -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Store:
    """The audit store of a gateway: the SQLite ``file`` in ``data_dir``, or the PostgreSQL database
    whose URL ``source`` is or refers to (``env:``/``file:``, read at each connect). The URL is a
    secret: messages show :attr:`label`. The signing key stays in ``data_dir`` either way."""

    data_dir: Path
    source: str | SecretRef | None = field(default=None, repr=False)  # None: SQLite
    file: str = DB_FILE

    @classmethod
    def of(cls, data_dir: Path, setting: str | SecretRef = "sqlite") -> Store:
        """The store ``[audit] store`` names: ``"sqlite"``, a postgresql:// URL or a reference to one."""
        return cls(Path(data_dir), None if setting == "sqlite" else setting)

    @classmethod
    def for_config(cls, config: Config) -> Store:
        """The store of a gateway's config."""
        return cls.of(config.gateway.data_dir, config.audit.store)

    @property
    def url(self) -> str | None:
        """The PostgreSQL URL (a reference is read now: SecretError naming only the reference,
        StoreError if it holds no postgresql:// URL); None for SQLite."""
        source = self.source
        if source is None or isinstance(source, str):
            return source
        url = source.resolve().strip()
        if not url.startswith(_SCHEMES):
            raise StoreError(f"audit.store {source.reference} does not hold a postgresql:// URL")
        return url

    @classmethod
    def sqlite(cls, path: Path) -> Store:
        """The SQLite store in directory ``path``, or in the file ``path`` (``*.db``)."""
        path = Path(path)
        if path.suffix == ".db" and not path.is_dir():
            return cls(path.parent, None, path.name)
        return cls(path)

    @property
    def postgres(self) -> bool:
        """A PostgreSQL store."""
        return self.source is not None

    @property
    def dialect(self) -> Dialect:
        """Its SQL dialect."""
        return POSTGRES if self.source is not None else SQLITE

    @property
    def path(self) -> Path:
        """The SQLite file (for a PostgreSQL store: where the embedded one would be)."""
        return self.data_dir / self.file

    @property
    def label(self) -> str:
        """How messages name the store: the file, or the URL with its password redacted."""
        if self.source is None:
            return str(self.path)
        try:
            url = self.url
        except HoopError:
            return f"postgresql store ({self.source})"
        return redact(url or "")

    def __repr__(self) -> str:
        return f"Store({self.label!r})"

    def __str__(self) -> str:
        return self.label

    def exists(self) -> bool:
        """Whether there is a store to read (a PostgreSQL one is looked for when connecting)."""
        return self.source is not None or self.path.exists()

    def scrub(self, text: str) -> str:
        """``text`` (a driver's message) without the URL's password."""
        if self.source is None:
            return text
        try:
            url = self.url or ""
        except HoopError:
            return text
        for secret in _passwords(url):
            if len(secret) >= 3:
                text = text.replace(secret, "***")
        return text

    def connect(self, *, create: bool) -> Db:
        """Open the store, migrated to the current schema (created first when ``create``); StoreError."""
        from hoopgw.audit._schema import connect_pg, connect_sqlite

        return connect_pg(self, create=create) if self.postgres else connect_sqlite(self, create=create)

    def open_readonly(self) -> Db:
        """Open the store for reading only, at the current schema version; StoreError."""
        from hoopgw.audit._schema import readonly_pg, readonly_sqlite

        return readonly_pg(self) if self.postgres else readonly_sqlite(self)


def as_store(where: Path | Store) -> Store:
    """``where`` itself, or the SQLite store in the directory (or ``*.db`` file) ``where``."""
    return where if isinstance(where, Store) else Store.sqlite(where)


def redact(url: str) -> str:
    """``url`` with its password (in the user info or a ``password`` parameter) shown as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{hosts}" if sep else netloc
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "postgresql://(a URL that does not parse)"


def _passwords(url: str) -> list[str]:
    """The password of ``url`` as written and decoded (for scrubbing messages)."""
    out: list[str] = []
    try:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        if ":" in userinfo:
            raw = userinfo.partition(":")[2]
            out += [raw, unquote(raw)]
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k == "password":
                out.append(v)
    except ValueError:
        pass
    return sorted({p for p in out if p}, key=len, reverse=True)


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (then it is a secret: configure it as a reference)."""
    return bool(_passwords(url))


def unique_violation(exc: Exception, column: str, constraint: str) -> bool:
    """Whether the integrity error ``exc`` broke the UNIQUE ``column`` (SQLite names ``table.column``)
    or the PostgreSQL ``constraint`` (``table_pkey``, or the unique index's name)."""
    if isinstance(exc, psycopg.Error):
        return exc.diag.constraint_name == constraint
    return column in str(exc)
