"""AuditStore: open the audit store (SQLite or PostgreSQL) and read sessions and events back (CLI, API)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from hoopgw.audit._db import DB_ERRORS, Db, Store, as_store
from hoopgw.errors import StoreError

#: the columns of a session and of an event as readers return them (the CLI, the sessions API)
SESSION_COLUMNS = (
    "id, type, connection, subject, groups, client_addr, auth, params, status, started_at, ended_at, "
    "close_reason, statements, errors, masked"
)
EVENT_COLUMNS = "seq, ts, session_id, kind, data, prompt_id"


class AuditStore:
    """Read access to the audit store (the writer is ``AuditWriter``)."""

    def __init__(self, path: Path, conn: Db) -> None:
        self.path = path
        self.store: Store = conn.store
        self._conn = conn

    @classmethod
    def open(cls, data_dir: Path | Store, *, create: bool = True) -> AuditStore:
        """Open (creating and migrating unless ``create=False``) the store in ``data_dir`` (or ``data_dir``
        itself, a :class:`Store`)."""
        store = as_store(data_dir)
        return cls(store.path, store.connect(create=create))

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Rows as mappings (``sqlite3.Row`` or dicts)."""
        try:
            rows: list[Any] = self._conn.dict_cursor().execute(sql, args).fetchall()
        except DB_ERRORS as exc:
            store = self.store
            raise StoreError(f"cannot read the audit store {store.label}: {store.scrub(str(exc))}") from None
        return rows

    def list_sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` sessions, newest first."""
        rows = self._query(
            f"SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_at DESC, id DESC LIMIT ?",  # noqa: S608
            (limit,),
        )
        return self._with_holds([session_row(row) for row in rows])

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        """One session by id, or None."""
        rows = self._query(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))  # noqa: S608
        return self._with_holds([session_row(rows[0])])[0] if rows else None

    def _with_holds(self, sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add ``legal_hold`` to each session: its active hold (set_by, set_at, reason) or None."""
        holds: dict[str, dict[str, Any]] = {}
        ids = [s["id"] for s in sessions]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._query(
                "SELECT session_id, set_by, set_at, reason FROM legal_holds WHERE released_at IS NULL"  # noqa: S608
                f" AND session_id IN ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            )
            holds.update(
                {row["session_id"]: {k: row[k] for k in ("set_by", "set_at", "reason")} for row in rows}
            )
        for s in sessions:
            s["legal_hold"] = holds.get(s["id"])
        return sessions

    def match_session_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids starting with ``prefix`` (for short ids typed by people)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?", (escaped + "%", limit)
        )
        return [row["id"] for row in rows]

    def session_events(self, session_id: str) -> list[dict[str, Any]]:
        """Every event of a session in order."""
        rows = self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE session_id = ? ORDER BY seq",  # noqa: S608
            (session_id,),
        )
        return [event_row(row) for row in rows]

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events of all sessions (and gateway-wide ones) after ``after_seq``, in order."""
        rows = self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (after_seq, limit),
        )
        return [event_row(row) for row in rows]

    def prompt_events(self, prompt_id: str) -> list[dict[str, Any]]:
        """Every event tagged with ``prompt_id`` (statements, approvals, ...), in order."""
        rows = self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE prompt_id = ? ORDER BY seq",  # noqa: S608
            (prompt_id,),
        )
        return [event_row(row) for row in rows]


def session_row(row: Any) -> dict[str, Any]:
    """A session row (``SESSION_COLUMNS``) with its JSON columns decoded."""
    out = dict(row)
    out["groups"] = orjson.loads(out["groups"])
    out["params"] = orjson.loads(out["params"])
    out["masked"] = orjson.loads(out["masked"]) if out["masked"] else {}
    return out


def event_row(row: Any) -> dict[str, Any]:
    """An event row (``EVENT_COLUMNS``) with its data decoded."""
    out = dict(row)
    out["data"] = orjson.loads(out["data"])
    return out
