"""Catalog look-ups for masking, on the gateway's own side connection to an upstream.

Column rules name tables and columns; the wire carries OIDs. When the core meets a result whose
table (or user type) OIDs it cannot name, the session asks this module, which queries the catalog
on a separate connection, so that a look-up never runs inside the client's session or transaction.
The side connection is opened lazily, shared by the sessions of one gateway connection (one query
at a time) and reopened after a failure. COPY statements are parsed with pglast (libpg_query) and
described (Parse + Describe, never executed) to learn their columns.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from typing import Any

import pglast
from pglast import ast
from pglast.stream import RawStream

from hoopgw import _core
from hoopgw.config import PostgresConnection
from hoopgw.errors import HoopError, UpstreamError
from hoopgw.proxy.pg._upstream import Upstream, connect_upstream

#: A table as the core takes it: (oid, schema, name, {attnum: column}).
TableRow = tuple[int, str, str, dict[int, str]]
#: A described COPY as the core takes it (see ``PgSession.resolve``).
CopyRow = tuple[str, str, str, str, str, bool, list[tuple[int, int, int, str]]]

_TABLES_SQL = (
    "SELECT c.oid::int8, n.nspname, c.relname, a.attnum, a.attname "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
    "WHERE c.oid IN ({oids}) AND a.attnum > 0 AND NOT a.attisdropped"
)
_TYPES_SQL = "SELECT oid::int8, typcategory FROM pg_catalog.pg_type WHERE oid IN ({oids})"
_TIMEOUT = 10.0


class CatalogError(HoopError):
    """The side connection could not answer."""


def _rows(body: bytes) -> list[str | None]:
    (n,) = struct.unpack_from("!h", body)
    pos, out = 2, list[str | None]()
    for _ in range(n):
        (length,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if length < 0:
            out.append(None)
        else:
            out.append(body[pos : pos + length].decode("utf-8", "replace"))
            pos += length
    return out


def _fields(body: bytes) -> list[tuple[int, int, int, str]]:
    """RowDescription body -> [(table oid, attnum, type oid, label)]."""
    (n,) = struct.unpack_from("!h", body)
    pos, out = 2, []
    for _ in range(n):
        end = body.index(b"\0", pos)
        label = body[pos:end].decode("utf-8", "replace")
        table, attnum, type_oid = struct.unpack_from("!IhI", body, end + 1)
        out.append((table, attnum, type_oid, label))
        pos = end + 1 + 18
    return out


def _oid_list(oids: Sequence[int]) -> str:
    return ", ".join(str(int(o)) for o in oids)


class SideConnection:
    """The gateway's own connection to one upstream, for catalog queries."""

    def __init__(self, cfg: PostgresConnection) -> None:
        self.cfg = cfg
        self._up: Upstream | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        up, self._up = self._up, None
        if up is not None:
            up.conn.write(_core.encode_message(ord("X"), b""))
            up.conn.close()

    async def _exchange(self, messages: bytes) -> list[tuple[int, bytes]]:
        """Send ``messages`` (ending in a Query or a Sync); the replies up to ReadyForQuery."""
        if self._up is None or self._up.conn.closed:
            try:
                # a look-up must never wait long on a lock a client holds (its own transaction)
                self._up = await connect_upstream(
                    self.cfg, [("application_name", "hoopgw-catalog"), ("lock_timeout", "2s")]
                )
            except UpstreamError as exc:
                raise CatalogError(f"catalog connection to {self.cfg.name!r} failed: {exc}") from None
        up = self._up
        framer = _core.Framer()
        up.conn.write(messages)
        replies: list[tuple[int, bytes]] = []
        while True:
            msg = framer.next_message()
            if msg is None:
                framer.feed(await up.conn.read())
                continue
            if msg[0] == ord("Z"):
                return replies
            replies.append(msg)

    async def _run(self, messages: bytes) -> list[tuple[int, bytes]]:
        try:
            return await asyncio.wait_for(self._locked_exchange(messages), _TIMEOUT)
        except TimeoutError:
            raise CatalogError(f"catalog query on {self.cfg.name!r} timed out") from None

    async def _locked_exchange(self, messages: bytes) -> list[tuple[int, bytes]]:
        async with self._lock:
            try:
                return await self._exchange(messages)
            except (OSError, HoopError, ValueError, struct.error) as exc:
                await self.close()
                if isinstance(exc, CatalogError):
                    raise
                raise CatalogError(f"catalog query on {self.cfg.name!r} failed: {exc}") from None
            except BaseException:
                # cancelled (or worse) mid-exchange: the reply was not read, the connection is out
                # of step; never reuse it
                await self.close()
                raise

    async def query(self, sql: str) -> list[list[str | None]]:
        replies = await self._run(_core.encode_message(ord("Q"), sql.encode() + b"\0"))
        for kind, body in replies:
            if kind == ord("E"):
                fields = _core.decode_fields(body)
                raise CatalogError(f"catalog query failed: {fields.get('M', '?')}")
        return [_rows(body) for kind, body in replies if kind == ord("D")]

    async def names(
        self, tables: Sequence[int], types: Sequence[int]
    ) -> tuple[list[TableRow], list[tuple[int, str]]]:
        """Schema, table and column names of ``tables``; categories of ``types``."""
        found: dict[int, TableRow] = {}
        if tables:
            for oid, schema, name, attnum, attname in await self.query(
                _TABLES_SQL.format(oids=_oid_list(tables))
            ):
                if oid is None or schema is None or name is None or attnum is None or attname is None:
                    continue
                row = found.setdefault(int(oid), (int(oid), schema, name, {}))
                row[3][int(attnum)] = attname
        kinds: list[tuple[int, str]] = []
        if types:
            for oid, category in await self.query(_TYPES_SQL.format(oids=_oid_list(types))):
                if oid is not None and category:
                    kinds.append((int(oid), category[0]))
        return list(found.values()), kinds

    async def describe(self, sql: str) -> list[tuple[int, int, int, str]]:
        """The result columns of ``sql`` (prepared and described, never executed)."""
        body = b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0)
        msgs = (
            _core.encode_message(ord("P"), body)
            + _core.encode_message(ord("D"), b"S\0")
            + _core.encode_message(ord("S"), b"")
        )
        for kind, reply in await self._run(msgs):
            if kind == ord("E"):
                fields = _core.decode_fields(reply)
                raise CatalogError(f"cannot describe the COPY query: {fields.get('M', '?')}")
            if kind == ord("T"):
                return _fields(reply)
        return []

    async def describe_copy(self, sql: str, index: int) -> CopyRow:
        """Format, options and columns of the ``index``-th COPY ... TO STDOUT in ``sql``."""
        copy = _copy_statement(sql, index)
        if copy is None:
            raise CatalogError("cannot mask COPY output: the COPY statement could not be described")
        if copy.query is not None:
            query = RawStream()(copy.query)
        else:
            rel = copy.relation
            assert rel is not None
            name = RawStream()(rel)
            cols = ", ".join(RawStream()(ast.ColumnRef(fields=(c,))) for c in (copy.attlist or ()))
            # identifiers come from the parse tree, deparsed (quoted) by pglast; COPY table TO reads
            # no child tables, hence ONLY
            query = f"SELECT {cols or '*'} FROM ONLY {name}"  # noqa: S608
        fields = await self.describe(query)
        return _copy_options(copy, fields)


def _copy_statement(sql: str, index: int) -> ast.CopyStmt | None:
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    copies = [
        s.stmt
        for s in statements
        if isinstance(s.stmt, ast.CopyStmt) and not s.stmt.is_from and s.stmt.filename is None
    ]
    return copies[index] if index < len(copies) else None


def _option(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, ast.String):
        return str(value.sval)
    if isinstance(value, ast.Integer):
        return str(value.ival)
    if isinstance(value, ast.Boolean):
        return "true" if value.boolval else "false"
    return str(value)


def _copy_options(copy: ast.CopyStmt, fields: list[tuple[int, int, int, str]]) -> CopyRow:
    opts: dict[str, str | None] = {}
    for opt in copy.options or ():
        opts[str(opt.defname)] = _option(opt.arg)
    fmt = (opts.get("format") or "text").lower()
    if fmt not in ("text", "csv", "binary"):
        fmt = "text"
    csv = fmt == "csv"
    delimiter = opts.get("delimiter") or ("," if csv else "\t")
    quote = opts.get("quote") or '"'
    escape = opts.get("escape") or quote
    null = opts.get("null")
    if null is None:
        null = "" if csv else "\\N"
    header = "header" in opts and (opts["header"] or "true").lower() not in ("false", "off", "0")
    return (fmt, delimiter, quote, escape, null, header, fields)
