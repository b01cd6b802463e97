"""The approval store: signed request and decision records in the gateway's audit store (``audit.db``,
or the PostgreSQL store of ``[audit] store``).

Every write is its own durable transaction on this object's own connection. A decision and the status
change it causes are one write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL the store's advisory
write lock) that re-reads the request and its earlier decisions under the write lock, so decisions made
at the same time (threads, other processes on the same ``data_dir``, other gateway nodes on the same
PostgreSQL store) are counted exactly once.

Times are integer milliseconds since the epoch, as in the records.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import orjson

from hoopgw.approvals._records import DECISION, GRANT, REQUEST
from hoopgw.audit._db import INTEGRITY_ERRORS, SQLITE, Db, Dialect, Store, unique_violation
from hoopgw.audit._tables import SqliteTables
from hoopgw.errors import HoopError

Status = Literal["pending", "approved", "denied", "expired", "void"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "denied", "expired", "void")
_REQUEST_COLUMNS = (
    "id, status, connection, requester, requester_owner, one_of_each_group, created_at, expires_at,"
    " record, closed_at, close_reason"
)
_DECISION_COLUMNS = "id, request_id, approver, approver_owner, decision, decided_at, record"
MAX_LIST = 1000
#: The longest access grant, in ms (``max_grant`` is at most 31 days). :meth:`ApprovalStore.active_grants`
#: relies on it: a grant still running was approved (before its request expired) less than this long ago.
MAX_GRANT_MS = 31 * 86_400_000


@functools.cache
def _active_grants_sql(d: Dialect) -> str:
    duration = d.json("record", "duration_ms", "bigint")
    # PostgreSQL must know the parameter's type to test it for NULL
    any_connection = ":connection IS NULL" if d is SQLITE else "CAST(:connection AS text) IS NULL"
    # a grant is held by an API key, or by a person however they log in (token, SSH key, SSH certificate)
    holder = f"CASE {d.json('record', 'requester.auth')} WHEN 'apikey' THEN 'apikey' ELSE 'token' END"
    return f"""
    SELECT id, connection, {d.json("record", "rule")}, closed_at, closed_at + {duration}, created_at
    FROM approval_requests
    WHERE status = 'approved' AND expires_at >= :floor
      AND requester = :subject AND ({any_connection} OR connection = :connection)
      AND {d.json("record", "type")} = 'access_grant'
      AND {holder} = :auth
      AND closed_at + {duration} > :now
    ORDER BY closed_at, id
"""  # noqa: S608


_ACTIVE_GRANTS = _active_grants_sql(SQLITE)  # the SQLite text (its query plan is tested)


def owner_subject(created_by: str | None) -> str | None:
    """The subject an API key's ``created_by`` names: ``user:alice`` (how the keys API records its
    creator) and ``key:bot`` are ``alice`` and ``bot``, the form subjects are compared in.

    Without this, a key alice made would not count as alice: she could approve her own request with it,
    or approve once as herself and once through it.
    """
    if not created_by:
        return None
    kind, sep, name = created_by.partition(":")
    if sep and kind in ("user", "key") and name:
        return name
    return created_by


class ApprovalError(HoopError):
    """A request cannot be opened or decided: the message says why, for the person who asked."""

    sqlstate = "42501"


class RequestNotFound(ApprovalError):
    """No approval request has this id."""


class TooManyPending(ApprovalError):
    """The requester already has as many pending requests of this type as one caller may."""


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """One row of ``approval_decisions``: a signed decision record and who made it."""

    id: str
    request_id: str
    approver: str
    approver_owner: str | None
    decision: Literal["approve", "deny"]
    decided_at: int
    record: dict[str, Any]

    @property
    def identities(self) -> frozenset[str]:
        """The subjects this decision stands for: the approver and the owner of their API key."""
        return frozenset(s for s in (self.approver, owner_subject(self.approver_owner)) if s)


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """One row of ``approval_requests`` with its decisions (oldest first)."""

    id: str
    status: Status
    connection: str
    requester: str
    requester_owner: str | None
    one_of_each_group: bool
    created_at: int
    expires_at: int
    record: dict[str, Any]
    closed_at: int | None
    close_reason: str | None
    decisions: tuple[StoredDecision, ...] = ()

    @property
    def identities(self) -> frozenset[str]:
        """The subjects this request stands for: the requester and the owner of their API key."""
        return frozenset(s for s in (self.requester, owner_subject(self.requester_owner)) if s)

    @property
    def closed(self) -> bool:
        """True unless the request is still pending."""
        return self.status != "pending"

    @property
    def type(self) -> str:
        """The record type: ``approval_request`` (a held statement) or ``access_grant``."""
        kind: str = self.record["type"]
        return kind

    @property
    def granted_until(self) -> int | None:
        """For an approved access grant, when it ends (ms); None otherwise."""
        if self.type != GRANT or self.status != "approved" or self.closed_at is None:
            return None
        return self.closed_at + int(self.record["duration_ms"])

    def public(self) -> dict[str, Any]:
        """What a listing shows (``id`` and ``status`` first, then the life of the request)."""
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "rule": self.record["rule"],
            "connection": self.connection,
            "requester": self.requester,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "approvals": sum(1 for d in self.decisions if d.decision == "approve"),
            "approvals_required": self.record["approvals_required"],
            "approvers": list(self.record["approvers"]),
        }


@dataclass(frozen=True, slots=True)
class ActiveGrant:
    """An approved access grant that is still running."""

    #: the id of the ``access_grant`` request
    request_id: str
    connection: str
    #: the name of the ``jit`` policy granted
    rule: str
    #: when it was approved (ms): the grant runs from then
    granted_at: int
    #: when it ends (ms)
    until: int

    def public(self) -> dict[str, Any]:
        """What ``GET /api/access-grants`` shows (times in ms)."""
        return {
            "id": self.request_id,
            "connection": self.connection,
            "rule": self.rule,
            "granted_at": self.granted_at,
            "until": self.until,
        }


#: Decides the status of a pending request from its decisions: ``(status, close_reason)``.
Tally = Callable[[StoredRequest, Sequence[StoredDecision]], "tuple[Status, str | None]"]


def _decision(row: tuple[Any, ...]) -> StoredDecision:
    return StoredDecision(
        id=row[0],
        request_id=row[1],
        approver=row[2],
        approver_owner=row[3],
        decision=row[4],
        decided_at=row[5],
        record=orjson.loads(row[6]),
    )


def _request(row: tuple[Any, ...], decisions: Sequence[StoredDecision] = ()) -> StoredRequest:
    return StoredRequest(
        id=row[0],
        status=cast("Status", row[1]),
        connection=row[2],
        requester=row[3],
        requester_owner=row[4],
        one_of_each_group=bool(row[5]),
        created_at=row[6],
        expires_at=row[7],
        record=orjson.loads(row[8]),
        closed_at=row[9],
        close_reason=row[10],
        decisions=tuple(decisions),
    )


def _counted_already(request: StoredRequest, new: StoredDecision) -> ApprovalError | None:
    """An approval by someone (subject or API key owner) who already approved counts once: refused."""
    if new.decision != "approve":
        return None
    for earlier in request.decisions:
        if earlier.decision == "approve" and earlier.identities & new.identities:
            return ApprovalError(
                f"{new.approver} already approved request {request.id}"
                f" (as {earlier.approver}); an approver counts once"
            )
    return None


def _dumps(record: Mapping[str, Any]) -> str:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode("utf-8")


class ApprovalStore(SqliteTables):
    """Reads and writes the approval tables; safe to share between threads (one lock)."""

    def __init__(self, data_dir: Path | Store) -> None:
        super().__init__(data_dir, "approval tables")
        #: a connection of its own for :meth:`active_grants` (session start, on the event loop): it
        #: never waits for this store's lock while a decision waits for the database's write lock
        self._grant_reads = SqliteTables(self.store, "approval tables")

    def close(self) -> None:
        """Close both connections (each is reopened on next use)."""
        super().close()
        self._grant_reads.close()

    # --- reads ------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> StoredRequest | None:
        """The request with this id and its decisions, or None."""
        with self._use() as conn:
            return self._get(conn, request_id)

    def _get(self, conn: Db, request_id: str) -> StoredRequest | None:
        row = conn.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM approval_requests WHERE id = ?",  # noqa: S608
            (request_id,),
        ).fetchone()
        if row is None:
            return None
        rows = conn.execute(
            f"SELECT {_DECISION_COLUMNS} FROM approval_decisions WHERE request_id = ?"  # noqa: S608
            " ORDER BY decided_at, rowid",
            (request_id,),
        ).fetchall()
        return _request(row, [_decision(r) for r in rows])

    def list(self, status: Status | None = None, limit: int = 100) -> builtins.list[StoredRequest]:
        """Requests, newest first, with their decisions; only those with ``status`` when given."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        limit = max(1, min(int(limit), MAX_LIST))
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        with self._use() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT id FROM approval_requests {where}"  # noqa: S608
                    " ORDER BY created_at DESC, id DESC LIMIT ?",
                    (*args, limit),
                ).fetchall()
            ]
            out = [self._get(conn, i) for i in ids]
        return [r for r in out if r is not None]

    def active_grants(
        self,
        subject: str,
        auth: str,
        now: int,
        connection: str | None = None,
        *,
        since: int | None = None,
    ) -> builtins.list[ActiveGrant]:
        """Approved ``access_grant`` requests of ``subject`` authenticated as ``auth`` that still run at
        ``now``, oldest first. ``apikey`` finds the grants an API key asked for; every other kind
        (``token``, ``sshkey``, ``sshcert``) the grants the person asked for, however they logged in
        then and now. On ``connection`` only when given; only those requested at or after ``since``
        (ms) when given (an API key's creation: a key that reuses a revoked key's name does not inherit
        its grants).

        One query on the ``(status, expires_at)`` index: a running grant was approved before its
        request expired and less than :data:`MAX_GRANT_MS` ago, so only recent approvals are read.
        """
        args = {
            "floor": now - MAX_GRANT_MS,
            "subject": subject,
            "connection": connection,
            "auth": "apikey" if auth == "apikey" else "token",
            "now": now,
        }
        with self._grant_reads._peek() as conn:
            rows = [] if conn is None else conn.execute(_active_grants_sql(conn.dialect), args).fetchall()
        return [ActiveGrant(r[0], r[1], r[2], r[3], r[4]) for r in rows if since is None or r[5] >= since]

    # --- writes -----------------------------------------------------------------------------------------

    def add_request(
        self,
        record: Mapping[str, Any],
        *,
        requester_owner: str | None = None,
        one_of_each_group: bool = False,
        max_pending: int | None = None,
    ) -> StoredRequest:
        """Store a new signed ``approval_request`` or ``access_grant`` record as pending; KeyError if its
        id exists. With ``max_pending``, TooManyPending when its requester (subject) already has that
        many requests of its type pending (checked and inserted in one write transaction)."""
        if record.get("type") not in (REQUEST, GRANT) or "signature" not in record:
            raise ValueError("add_request takes a signed approval_request or access_grant record")
        if record["type"] == GRANT and not 1 <= record["duration_ms"] <= MAX_GRANT_MS:
            raise ValueError(f"an access grant lasts at most {MAX_GRANT_MS // 86_400_000} days")
        subject = record["requester"]["subject"]
        with self._use() as conn, self._immediate(conn):
            if max_pending is not None:
                (pending,) = conn.execute(
                    "SELECT count(*) FROM approval_requests WHERE status = 'pending' AND expires_at > ?"  # noqa: S608
                    f" AND requester = ? AND {conn.dialect.json('record', 'type')} = ?",
                    (record["created_at"], subject, record["type"]),
                ).fetchone()
                if pending >= max_pending:
                    raise TooManyPending(
                        f"{subject} already has {pending} pending requests of this kind (at most"
                        f" {max_pending}): wait for them to be decided or to expire"
                    )
            try:
                conn.execute(
                    f"INSERT INTO approval_requests ({_REQUEST_COLUMNS})"  # noqa: S608
                    " VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                    (
                        record["id"],
                        record["connection"],
                        subject,
                        requester_owner,
                        int(one_of_each_group),
                        record["created_at"],
                        record["expires_at"],
                        _dumps(record),
                    ),
                )
            except INTEGRITY_ERRORS as exc:
                if unique_violation(exc, "approval_requests.id", "approval_requests_pkey"):
                    raise KeyError(record["id"]) from None
                raise
            stored = self._get(conn, record["id"])
        assert stored is not None
        return stored

    def add_decision(
        self,
        record: Mapping[str, Any],
        tally: Tally,
        *,
        approver_owner: str | None = None,
    ) -> StoredRequest:
        """Store a signed ``approval_decision`` and apply its effect, in one transaction.

        Under the write lock: the request must exist and be pending (ApprovalError otherwise); if it is
        past ``expires_at`` at the decision's ``decided_at`` it is marked expired and ApprovalError is
        raised; an approval by someone (subject or API key owner) who already approved is refused; then
        the decision is inserted and ``tally`` (given every decision, the new one last) sets the status.
        Returns the request as it is after the commit.
        """
        if record.get("type") != DECISION or "signature" not in record:
            raise ValueError("add_decision takes a signed approval_decision record")
        request_id: str = record["request_id"]
        approver: str = record["approver"]["subject"]
        at: int = record["decided_at"]
        new = StoredDecision(
            id=record["id"],
            request_id=request_id,
            approver=approver,
            approver_owner=approver_owner,
            decision=record["decision"],
            decided_at=at,
            record=dict(record),
        )
        refusal: ApprovalError | None = None
        with self._use() as conn:
            with self._immediate(conn):
                request = self._get(conn, request_id)
                if request is None:
                    refusal = RequestNotFound(f"no approval request {request_id}")
                elif request.closed:
                    refusal = closed_error(request)
                elif at >= request.expires_at:
                    _close(conn, request_id, "expired", request.expires_at, "expired")
                    refusal = ApprovalError(
                        f"approval request {request_id} expired before this decision; nothing was decided"
                    )
                else:
                    refusal = _counted_already(request, new)
                    if refusal is None:
                        try:
                            conn.execute(
                                f"INSERT INTO approval_decisions ({_DECISION_COLUMNS})"  # noqa: S608
                                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (
                                    new.id,
                                    request_id,
                                    approver,
                                    approver_owner,
                                    new.decision,
                                    at,
                                    _dumps(record),
                                ),
                            )
                        except INTEGRITY_ERRORS as exc:
                            if unique_violation(exc, "approval_decisions.id", "approval_decisions_pkey"):
                                raise KeyError(record["id"]) from None
                            raise
                        status, reason = tally(request, (*request.decisions, new))
                        if status != "pending":
                            _close(conn, request_id, status, at, reason)
            after = self._get(conn, request_id)
        if refusal is not None:
            raise refusal
        assert after is not None
        return after

    def expire_due(self, now: int) -> builtins.list[StoredRequest]:
        """Mark every pending request whose ``expires_at`` is at or before ``now`` expired; return them."""
        with self._use() as conn:
            with self._immediate(conn):
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM approval_requests WHERE status = 'pending' AND expires_at <= ?",
                        (now,),
                    ).fetchall()
                ]
                for request_id in ids:
                    # closed_at is when it lapsed, not when someone noticed
                    conn.execute(
                        "UPDATE approval_requests SET status = 'expired', closed_at = expires_at,"
                        " close_reason = 'expired' WHERE id = ?",
                        (request_id,),
                    )
            out = [self._get(conn, i) for i in ids]
        return [r for r in out if r is not None]

    def void(self, request_id: str, reason: str, now: int) -> StoredRequest:
        """Mark a pending request void (its statement can no longer run); ApprovalError if it is closed."""
        if not reason.strip():
            raise ValueError("voiding a request needs a reason")
        with self._use() as conn:
            with self._immediate(conn):
                request = self._get(conn, request_id)
                if request is not None and not request.closed:
                    _close(conn, request_id, "void", now, reason)
            after = self._get(conn, request_id)
        if request is None or after is None:
            raise RequestNotFound(f"no approval request {request_id}")
        if request.closed:
            raise closed_error(request)
        return after


def _close(conn: Db, request_id: str, status: Status, at: int, reason: str | None) -> None:
    conn.execute(
        "UPDATE approval_requests SET status = ?, closed_at = ?, close_reason = ?"
        " WHERE id = ? AND status = 'pending'",
        (status, at, reason, request_id),
    )


def closed_error(request: StoredRequest) -> ApprovalError:
    """The refusal of a decision on a closed request."""
    why = f": {request.close_reason}" if request.close_reason and request.status != "expired" else ""
    return ApprovalError(
        f"approval request {request.id} is already closed ({request.status}{why});"
        " it can no longer be decided"
    )
