"""``/api/approvals``: list, show, decide and wait for approval requests; ``/api/signing-key``.

- ``GET /api/approvals?status=S&limit=N`` → the requests the caller may see, newest first.
- ``GET /api/approvals/{id}`` → one request with its ``decisions`` and signed ``records``.
- ``GET /api/approvals/{id}/records`` → the signed records alone (what ``hoopgw approvals verify`` reads).
- ``POST /api/approvals/{id}/approve`` ``{"reason"?}`` / ``.../deny`` ``{"reason"}`` → the signed decision.
- ``GET /api/approvals/{id}/wait?timeout=S`` → the request once closed or after S seconds (long poll);
  with ``Accept: text/event-stream``, server-sent ``status`` events: now, and when it closes.
- ``GET /api/signing-key`` (no authentication) → the public key that verifies the records.

Who sees a request: ``gateway.admins`` and ``gateway.auditors`` see all; anyone else the requests they
made and those they may decide. An unknown request and one the caller may not see get the same 404.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from hoopgw.api._http import AuditFn, HttpError, authenticate, endpoint, json_response, read_json
from hoopgw.approvals import (
    STATUSES,
    ApprovalError,
    ApprovalService,
    RequestNotFound,
    Status,
    StoredRequest,
    key_id,
    public_key_b64,
    public_key_pem,
)
from hoopgw.approvals._store import MAX_LIST, owner_subject
from hoopgw.identity import Authenticator, Principal

log = logging.getLogger("hoopgw.api")

DEFAULT_LIMIT = 100
DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
#: an SSE comment this often keeps proxies from closing a quiet stream
KEEPALIVE_S = 15.0
_MAX_ID = 64
#: long polls and event streams one caller (subject and auth kind) may hold open at once: each holds a
#: connection, and so a file descriptor of the gateway, for up to MAX_WAIT_S
MAX_WAITS_PER_CALLER = 32
_DECIDE_FIELDS = frozenset({"reason"})
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def approval_json(request: StoredRequest) -> dict[str, Any]:
    """The API's view of a request (any record type): ``id`` and ``status`` first, times in ms and ISO."""
    record = request.record
    return {
        "id": request.id,
        "status": request.status,
        "type": record["type"],
        "connection": request.connection,
        "requester": request.requester,
        "rule": record["rule"],
        "statement": record.get("statement"),
        "params_masked": record.get("params_masked"),
        "more_params_masked": record.get("more_params_masked"),
        "prompt_id": record.get("prompt_id"),
        "covers": record.get("covers"),
        "reason": record.get("reason"),
        "duration_ms": record.get("duration_ms"),
        "approvers": list(record["approvers"]),
        "approvals_required": record["approvals_required"],
        "approvals": sum(1 for d in request.decisions if d.decision == "approve"),
        "one_of_each_group": request.one_of_each_group,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "closed_at": request.closed_at,
        "created": _iso(request.created_at),
        "expires": _iso(request.expires_at),
        "closed": _iso(request.closed_at),
        "close_reason": request.close_reason,
    }


def approval_detail(request: StoredRequest) -> dict[str, Any]:
    """:func:`approval_json` plus the ``decisions`` and the signed ``records`` (request first)."""
    return {
        **approval_json(request),
        "decisions": [
            {
                "id": d.id,
                "approver": d.approver,
                "decision": d.decision,
                "reason": d.record.get("reason"),
                "decided_at": d.decided_at,
                "decided": _iso(d.decided_at),
            }
            for d in request.decisions
        ],
        "records": approval_records(request),
    }


def approval_records(request: StoredRequest) -> list[dict[str, Any]]:
    """The signed request record followed by its signed decision records, exactly as stored."""
    return [request.record, *(d.record for d in request.decisions)]


@dataclass(frozen=True)
class ApprovalApi:
    """What the approval endpoints need from the gateway."""

    service: ApprovalService
    authenticator: Authenticator
    public_key: Ed25519PublicKey
    admins: Sequence[str] = ()
    auditors: Sequence[str] = ()
    audit: AuditFn | None = None
    #: open long polls and streams per caller (used on the event loop only)
    waits: dict[tuple[str, str], int] = field(default_factory=dict)

    def wait_slot(self, principal: Principal) -> _WaitSlot:
        """Take one of the caller's :data:`MAX_WAITS_PER_CALLER` waits; 429 when all are taken."""
        who = (principal.subject, principal.auth)
        held = self.waits.get(who, 0)
        if held >= MAX_WAITS_PER_CALLER:
            raise HttpError(
                429,
                f"{principal.subject} already waits on {held} requests at once"
                f" (at most {MAX_WAITS_PER_CALLER})",
            )
        self.waits[who] = held + 1
        return _WaitSlot(self.waits, who)

    async def caller(self, request: Request) -> Principal:
        return await authenticate(request, self.authenticator, self.audit)

    def sees_all(self, principal: Principal) -> bool:
        """Admins and auditors see every request."""
        return any(principal.matches(s) for s in (*self.admins, *self.auditors))

    def may_see(self, principal: Principal, request: StoredRequest) -> bool:
        """Whether ``principal`` may see ``request``: they see all, made it (the same subject, both a
        person — however they logged in: token, SSH key, SSH certificate — or both an API key: an API
        key named like a user is not that user), own the API key that made it, or may decide it."""
        requester = request.record["requester"]
        by_person = requester["auth"] != "apikey"
        made_it = principal.subject == requester["subject"] and principal.is_person == by_person
        owns_key = principal.is_person and principal.subject == owner_subject(request.requester_owner)
        return (
            self.sees_all(principal)
            or made_it
            or owns_key
            or any(principal.matches(ref) for ref in request.record["approvers"])
        )

    async def visible(self, principal: Principal, request_id: str) -> StoredRequest:
        """The request if ``principal`` may see it; 404 otherwise (the same answer as for no request)."""
        request = None
        if len(request_id) <= _MAX_ID:
            request = await asyncio.to_thread(self.service.store.get, request_id)
        if request is None or not self.may_see(principal, request):
            raise HttpError(404, f"no approval request {request_id}")
        return request

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(None, kind, payload)


class _WaitSlot:
    """One open wait of a caller, given back once (by the wait, or when its stream is dropped unread)."""

    def __init__(self, waits: dict[tuple[str, str], int], who: tuple[str, str]) -> None:
        self._waits = waits
        self._who = who
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            left = self._waits.get(self._who, 1) - 1
            if left > 0:
                self._waits[self._who] = left
            else:
                self._waits.pop(self._who, None)


def _list_args(request: Request) -> tuple[Status | None, int]:
    query = request.query_params
    unknown = sorted(set(query) - {"status", "limit"})
    if unknown:
        raise HttpError(400, f"unknown query parameter(s): {', '.join(unknown)}")
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise HttpError(400, f"status must be one of {', '.join(STATUSES)}")
    text = query.get("limit")
    if text is None:
        return status, DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or len(text) > 7 or not 1 <= int(text) <= MAX_LIST:
        raise HttpError(400, f"limit must be a whole number from 1 to {MAX_LIST}")
    return status, int(text)


def _wait_timeout(request: Request) -> float:
    unknown = sorted(set(request.query_params) - {"timeout"})
    if unknown:
        raise HttpError(400, f"unknown query parameter(s): {', '.join(unknown)}")
    text = request.query_params.get("timeout")
    if text is None:
        return DEFAULT_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_WAIT_S:  # also refuses NaN
        raise HttpError(400, f"timeout must be a number of seconds from 0 to {MAX_WAIT_S:.0f}")
    return value


async def _decide_body(request: Request) -> dict[str, Any]:
    """The decision's JSON body; an approval may send none at all."""
    length = request.headers.get("content-length")
    if length == "0" or (length is None and "transfer-encoding" not in request.headers):
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _DECIDE_FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    if not isinstance(body.get("reason"), str | None):
        raise HttpError(400, "reason must be a string")
    return body


def _refusal_status(
    after: StoredRequest | None, decision: str, reason: str | None, exc: ApprovalError
) -> int:
    """The HTTP status of a decision the service refused, from the state it left."""
    if after is None or isinstance(exc, RequestNotFound):
        return 404
    if after.closed:
        return 409  # decided, expired or void already (or it expired just now)
    if decision == "deny" and not (reason or "").strip():
        return 400
    if "counts once" in str(exc):
        return 409  # this approver approved already
    return 403  # the requester, or not an approver


async def _closed_within(
    wait: asyncio.Future[StoredRequest],
    stopping: asyncio.Event,
    seconds: float,
    gone: asyncio.Future[Any] | None = None,
) -> StoredRequest | None:
    """``wait``'s request if it closes within ``seconds`` (and the API is not stopping, and ``gone`` —
    the client went away — is not done first), else None."""
    stop = asyncio.ensure_future(stopping.wait())
    try:
        both: list[asyncio.Future[Any]] = [wait, stop, *([gone] if gone is not None else [])]
        await asyncio.wait(both, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    return wait.result() if wait.done() else None


async def _client_gone(request: Request) -> None:
    """Returns when the client of ``request`` (a GET: no body) disconnects."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _drop(task: asyncio.Future[Any]) -> None:
    """Cancel ``task``; its outcome, whatever it is, is not wanted (and not reported as unretrieved)."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _sse(request: StoredRequest) -> bytes:
    return b"event: status\ndata: " + orjson.dumps(approval_json(request)) + b"\n\n"


def approval_routes(api: ApprovalApi, stopping: asyncio.Event | None = None) -> list[BaseRoute]:
    """The ``/api/approvals`` and ``/api/signing-key`` routes bound to ``api``.

    ``stopping`` is set when the API shuts down: long polls and event streams then answer at once.
    """
    store = api.service.store
    stopping = stopping if stopping is not None else asyncio.Event()

    @endpoint
    async def list_requests(request: Request) -> Response:
        principal = await api.caller(request)
        status, limit = _list_args(request)
        if api.sees_all(principal):
            found = await asyncio.to_thread(store.list, status, limit)
        else:  # filtered here: read as many as the store lists, keep the caller's first `limit`
            found = await asyncio.to_thread(store.list, status, MAX_LIST)
            found = [r for r in found if api.may_see(principal, r)][:limit]
        return json_response([approval_json(r) for r in found])

    @endpoint
    async def show(request: Request) -> Response:
        principal = await api.caller(request)
        found = await api.visible(principal, request.path_params["id"])
        return json_response(approval_detail(found))

    @endpoint
    async def records(request: Request) -> Response:
        principal = await api.caller(request)
        found = await api.visible(principal, request.path_params["id"])
        return json_response(approval_records(found))

    async def decide(request: Request, decision: str) -> Response:
        principal = await api.caller(request)
        request_id: str = request.path_params["id"]
        body = await _decide_body(request)
        await api.visible(principal, request_id)
        reason: str | None = body.get("reason")
        try:
            record, status = await asyncio.to_thread(
                api.service.decide, request_id, principal, decision, reason
            )
        except ApprovalError as exc:
            after = await asyncio.to_thread(store.get, request_id)
            raise HttpError(_refusal_status(after, decision, reason, exc), str(exc)) from None
        api.record(
            "approval_decided",
            {
                "request_id": request_id,
                "decision_id": record["id"],
                "approver": principal.subject,
                "auth": principal.auth,
                "decision": decision,
                "status": status,
            },
        )
        log.info(
            "approval decided",
            extra={"request": request_id, "subject": principal.subject, "decision": decision, "to": status},
        )
        return json_response({"id": request_id, "status": status, "decision": record})

    @endpoint
    async def approve(request: Request) -> Response:
        return await decide(request, "approve")

    @endpoint
    async def deny(request: Request) -> Response:
        return await decide(request, "deny")

    @endpoint
    async def wait(request: Request) -> Response:
        principal = await api.caller(request)
        timeout = _wait_timeout(request)
        found = await api.visible(principal, request.path_params["id"])
        if "text/event-stream" in request.headers.get("accept", ""):
            slot = api.wait_slot(principal)
            events = _stream(found, timeout, slot)
            weakref.finalize(events, slot.release)  # a stream dropped before it started
            return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)
        if not found.closed and timeout > 0:
            slot = api.wait_slot(principal)
            waiting = asyncio.ensure_future(api.service.wait(found.id))
            gone = asyncio.ensure_future(_client_gone(request))  # its slot is given back at once
            try:
                found = await _closed_within(waiting, stopping, timeout, gone) or found
            finally:
                _drop(waiting)
                _drop(gone)
                slot.release()
            if not found.closed:  # re-read: another process may have decided it meanwhile
                fresh = await asyncio.to_thread(store.get, found.id)
                found = fresh or found
        return json_response(approval_json(found))

    async def _stream(found: StoredRequest, seconds: float, slot: _WaitSlot) -> AsyncIterator[bytes]:
        waiting: asyncio.Future[StoredRequest] | None = None
        try:
            yield _sse(found)
            if found.closed:
                return
            deadline = asyncio.get_running_loop().time() + seconds
            waiting = asyncio.ensure_future(api.service.wait(found.id))
            while not stopping.is_set():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return
                closed = await _closed_within(waiting, stopping, min(left, KEEPALIVE_S))
                if closed is not None:
                    yield _sse(closed)
                    return
                if not stopping.is_set() and left > KEEPALIVE_S:
                    yield b": keep-alive\n\n"
        finally:
            if waiting is not None:
                _drop(waiting)
            slot.release()

    async def signing_key(_request: Request) -> Response:
        public = api.public_key
        return json_response(
            {
                "kid": key_id(public),
                "kty": "OKP",
                "alg": "EdDSA",
                "crv": "Ed25519",
                "x": public_key_b64(public),
                "pem": public_key_pem(public),
            }
        )

    return [
        Route("/api/approvals", list_requests, methods=["GET"]),
        Route("/api/approvals/{id}", show, methods=["GET"]),
        Route("/api/approvals/{id}/records", records, methods=["GET"]),
        Route("/api/approvals/{id}/approve", approve, methods=["POST"]),
        Route("/api/approvals/{id}/deny", deny, methods=["POST"]),
        Route("/api/approvals/{id}/wait", wait, methods=["GET"]),
        Route("/api/signing-key", signing_key, methods=["GET"]),
    ]
