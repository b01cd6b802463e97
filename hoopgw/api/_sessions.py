"""``/api/sessions``: recorded sessions, read back from the audit store; ending a live one.

- ``GET /api/sessions?limit=N&status=open|closed&connection=C&subject=S`` → sessions, newest first, as
  ``hoopgw sessions list --json`` shows them (``limit``: default 50, at most 1000).
- ``GET /api/sessions/{id}?after=SEQ&limit=N`` → one session and its events (statements with their
  prompt ids, denials, approval events) in order, each tagged event with ``prompt_known``; at most
  ``limit`` events (default 500, at most 1000) after the event ``after``; ``next_after`` is where the
  next page starts (null: no more).
- ``POST /api/sessions/{id}/end`` (``gateway.admins`` only) → ends a live session: its client gets
  SQLSTATE 57P01 naming the admin, and a ``session_ended_by_admin`` event goes on the session's record.

Who sees a session: ``gateway.admins`` and ``gateway.auditors`` see every session; anyone else only the
sessions of their own identity — the same subject *and* the same kind of credential (a person's token,
or an API key: ``user:alice`` and ``key:alice`` are two identities). A session the caller may not see
gets the same 404 as an unknown id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hoopgw.api._http import (
    AuditFn,
    HttpError,
    authenticate,
    endpoint,
    json_response,
    principal_ref,
    require_role,
)
from hoopgw.audit import is_session_id
from hoopgw.audit._db import Db, Store
from hoopgw.audit._prompts import PromptStore, identity_ref, prompt_known
from hoopgw.audit._store import EVENT_COLUMNS, SESSION_COLUMNS, event_row, session_row
from hoopgw.audit._tables import SqliteTables
from hoopgw.identity import ApiKeyStore, Authenticator, Principal

log = logging.getLogger("hoopgw.api")

DEFAULT_LIMIT = 50
DEFAULT_EVENTS = 500
#: the most sessions one list, and the most events one page of a session, returns
MAX_LIMIT = 1000
STATUSES = ("open", "closed")
#: connection and subject filters longer than this match nothing anyone could have recorded
_MAX_FILTER = 1024


#: ``end_session(session_id, message)``: end the live session (SQLSTATE 57P01, ``message``) and say
#: whether one was found. ``Gateway.end_session``; called on the event loop.
EndSession = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose sessions a caller may see: one identity (subject and kind of credential, ``token`` or
    ``apikey``) and, for an API key, since when (the key's creation: a key named like a revoked one
    does not see that key's sessions; ``None``: no limit)."""

    subject: str
    auth: str
    since: float | None = None

    def owns(self, session: dict[str, Any]) -> bool:
        """True when ``session`` is of this identity."""
        mine = identity_ref(session["subject"], session["auth"]) == identity_ref(self.subject, self.auth)
        return mine and (self.since is None or session["started_at"] >= self.since)


class SessionReader(SqliteTables):
    """Reads the ``sessions`` and ``events`` tables of the audit store (``data_dir/audit.db`` or a
    PostgreSQL :class:`Store`); thread-safe, blocking (run it in a thread). It never creates the store:
    before the first session there is nothing to read."""

    def __init__(self, data_dir: Path | Store) -> None:
        super().__init__(data_dir, "session records")
        self._prompts = PromptStore(self.store)

    def sessions(
        self,
        limit: int,
        *,
        status: str | None = None,
        connection: str | None = None,
        subject: str | None = None,
        owner: Owner | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` sessions matching the filters, newest first; ``owner``: only theirs."""
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if connection is not None:
            where.append("connection = ?")
            args.append(connection)
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if owner is not None:
            where.append("subject = ? AND (COALESCE(auth, '') = 'apikey') = ?")
            args += [owner.subject, owner.auth == "apikey"]
            if owner.since is not None:
                where.append("started_at >= ?")
                args.append(owner.since)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions {clause}ORDER BY started_at DESC, id DESC LIMIT ?"  # noqa: S608
        with self._peek() as conn:
            if conn is None:
                return []
            return [session_row(row) for row in _rows(conn, sql, (*args, limit))]

    def get(self, session_id: str) -> dict[str, Any] | None:
        """One session by its exact id, or None."""
        with self._peek() as conn:
            if conn is None:
                return None
            rows = _rows(conn, f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))  # noqa: S608
        return session_row(rows[0]) if rows else None

    def events(self, session: dict[str, Any], after: int, limit: int) -> list[dict[str, Any]]:
        """At most ``limit`` events of ``session`` after the event ``after``, in order; each event
        with a prompt tag (and the session, for its own) gets ``prompt_known`` (docs/PROMPTS.md)."""
        with self._peek() as conn:
            if conn is None:
                return []
            events = [
                event_row(row)
                for row in _rows(
                    conn,
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE session_id = ? AND seq > ?"  # noqa: S608
                    " ORDER BY seq LIMIT ?",
                    (session["id"], after, limit),
                )
            ]
        tagged = [e for e in events if e["prompt_id"]]
        own = session["params"].get("prompt_id")
        if tagged or own:
            owners = self._prompts.owners([*(e["prompt_id"] for e in tagged), *([own] if own else [])])
            who = identity_ref(session["subject"], session["auth"])
            for e in tagged:
                e["prompt_known"] = prompt_known(owners.get(e["prompt_id"]), who)
            if own:
                session["prompt_known"] = prompt_known(owners.get(own), who)
        return events

    def close(self) -> None:
        super().close()
        self._prompts.close()


def _rows(conn: Db, sql: str, args: tuple[Any, ...]) -> list[Any]:
    rows: list[Any] = conn.dict_cursor().execute(sql, args).fetchall()
    return rows


@dataclass(frozen=True)
class SessionApi:
    """What the session endpoints need from the gateway."""

    reader: SessionReader
    authenticator: Authenticator
    admins: Sequence[str] = ()
    auditors: Sequence[str] = ()
    audit: AuditFn | None = None
    #: ends a live session; None: this gateway has no live sessions to end (every end answers 404)
    end_session: EndSession | None = None
    #: the gateway's API keys: a key sees only the sessions opened since it was created
    api_keys: ApiKeyStore | None = None

    async def caller(self, request: Request) -> Principal:
        return await authenticate(request, self.authenticator, self.audit)

    def sees_all(self, principal: Principal) -> bool:
        """Admins and auditors see every session."""
        return any(principal.matches(s) for s in (*self.admins, *self.auditors))

    def owner(self, principal: Principal) -> Owner | None:
        """None for those who see every session; else the identity whose sessions they see (blocking
        for an API key: run it in a thread)."""
        if self.sees_all(principal):
            return None
        since = None
        if principal.auth == "apikey":
            key = None
            if self.api_keys is not None and principal.token_id is not None:
                key = self.api_keys.lookup(principal.token_id)
            # a key this gateway cannot find (none given, or deleted) sees nothing older than now
            since = key.created_at if key is not None else time.time()
        return Owner(principal.subject, principal.auth, since)

    def listing(
        self,
        principal: Principal,
        limit: int,
        status: str | None,
        connection: str | None,
        subject: str | None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` sessions ``principal`` may see that match the filters (blocking)."""
        owner = self.owner(principal)
        return self.reader.sessions(limit, status=status, connection=connection, subject=subject, owner=owner)

    def _get(self, principal: Principal, session_id: str) -> dict[str, Any] | None:
        found = self.reader.get(session_id)
        owner = self.owner(principal) if found is not None else None
        return None if found is None or (owner is not None and not owner.owns(found)) else found

    async def visible(self, principal: Principal, session_id: str) -> dict[str, Any]:
        """The session if ``principal`` may see it; 404 otherwise (the same answer as for no session)."""
        found = None
        if is_session_id(session_id):
            found = await asyncio.to_thread(self._get, principal, session_id)
        if found is None:
            raise HttpError(404, f"no session {session_id}")
        return found


def _bounded(query: QueryParams, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name``: a whole number from ``low`` to ``high`` (400 otherwise)."""
    text = query.get(name)
    if text is None:
        return default
    # the length first: int() refuses (ValueError) a string of more than 4300 digits
    if (
        not (text.isascii() and text.isdigit() and len(text) <= len(str(high)))
        or not low <= int(text) <= high
    ):
        raise HttpError(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _known(request: Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise HttpError(400, f"unknown query parameter(s): {', '.join(unknown)}")


def _filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and len(value) > _MAX_FILTER:
        raise HttpError(400, f"{name} must be at most {_MAX_FILTER} characters")
    return value


def _list_args(request: Request) -> tuple[int, str | None, str | None, str | None]:
    _known(request, {"limit", "status", "connection", "subject"})
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise HttpError(400, f"status must be one of {', '.join(STATUSES)}")
    limit = _bounded(request.query_params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return limit, status, _filter(request, "connection"), _filter(request, "subject")


def _page_args(request: Request) -> tuple[int, int]:
    _known(request, {"after", "limit"})
    after = _bounded(request.query_params, "after", 0, 0, 2**63 - 1)
    return after, _bounded(request.query_params, "limit", DEFAULT_EVENTS, 1, MAX_LIMIT)


def end_message(by: str) -> str:
    """What the client of a session an admin ended reads (``by``: ``user:NAME``)."""
    return f"terminating connection: the session was ended by the gateway administrator {by}"


def session_routes(api: SessionApi) -> list[BaseRoute]:
    """The ``/api/sessions`` routes bound to ``api``."""

    @endpoint
    async def list_sessions(request: Request) -> Response:
        principal = await api.caller(request)
        limit, status, connection, subject = _list_args(request)
        found = await asyncio.to_thread(api.listing, principal, limit, status, connection, subject)
        return json_response(found)

    @endpoint
    async def show(request: Request) -> Response:
        principal = await api.caller(request)
        after, limit = _page_args(request)
        session = await api.visible(principal, request.path_params["id"])
        # one more than asked: whether there is a next page
        events = await asyncio.to_thread(api.reader.events, session, after, limit + 1)
        next_after = events[limit - 1]["seq"] if len(events) > limit else None
        return json_response({**session, "events": events[:limit], "next_after": next_after})

    @endpoint
    async def end(request: Request) -> Response:
        principal = await api.caller(request)
        require_role(principal, api.admins, "ending a session", "gateway.admins")
        session_id: str = request.path_params["id"]
        by = principal_ref(principal)
        end_session = api.end_session
        if (
            end_session is None
            or not is_session_id(session_id)
            or not end_session(session_id, end_message(by))
        ):
            raise HttpError(404, f"no live session {session_id}")
        # The session only asked to end: its close is recorded once its task runs again, after this
        # handler returns to the loop, so this event precedes the close on the session's record.
        if api.audit is not None:
            api.audit(
                session_id,
                "session_ended_by_admin",
                {"id": session_id, "by": by, "subject": principal.subject, "auth": principal.auth},
            )
        log.info("session ended by an admin", extra={"session": session_id, "by": by})
        return json_response({"id": session_id, "status": "closed"})

    return [
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/{id}", show, methods=["GET"]),
        Route("/api/sessions/{id}/end", end, methods=["POST"]),
    ]
