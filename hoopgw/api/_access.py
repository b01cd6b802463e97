"""``/api/access-requests`` and ``/api/access-grants``: just-in-time access (any authenticated caller).

- ``POST /api/access-requests`` ``{"connection", "for": "30m" | seconds, "reason", "policy"?}`` → 201 with
  the pending ``access_grant`` request: the ``jit`` policy naming the caller on that connection (the one
  named, or the only one) is granted for ``for`` (at most its ``max_grant``) once its approvers approve
  it through the approvals API, within its ``approval_timeout``.
- The request is then an approval request like any other: ``GET /api/approvals/{id}`` (and ``/wait``)
  shows it to its requester, ``POST /api/approvals/{id}/approve|deny`` decides it.
- ``GET /api/access-grants`` → the caller's running grants: ``id``, ``connection``, ``rule``,
  ``granted_at``, ``until`` (ms since the epoch).

Times are integer milliseconds since the epoch, as in the signed records (docs/APPROVALS.md).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hoopgw.api._approvals import approval_json
from hoopgw.api._http import (
    AuditFn,
    HttpError,
    authenticate,
    endpoint,
    json_response,
    principal_ref,
    read_json,
)
from hoopgw.approvals import (
    AmbiguousPolicy,
    ApprovalService,
    NoGrantablePolicy,
    StoredRequest,
    TooManyPending,
    grantable_policy,
)
from hoopgw.config import Config, parse_duration
from hoopgw.identity import Authenticator, Principal

log = logging.getLogger("hoopgw.api")

_FIELDS = frozenset({"connection", "for", "reason", "policy"})
MAX_REASON = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class AccessApi:
    """What the access endpoints need from the gateway."""

    config: Config
    approvals: ApprovalService
    authenticator: Authenticator
    audit: AuditFn | None = None

    async def caller(self, request: Request) -> Principal:
        return await authenticate(request, self.authenticator, self.audit)

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(None, kind, payload)


def span(seconds: float) -> str:
    """``30m``, ``1h``, ``2d``, ``90s``, ``1.5s``: a duration as a person would write it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise HttpError(400, f"{name} is required: a non-empty string")
    return value.strip()


def _reason(body: dict[str, Any]) -> str:
    reason = _text(body, "reason")
    if len(reason) > MAX_REASON:
        raise HttpError(400, f"reason must be at most {MAX_REASON} characters")
    if _CONTROL.search(reason):
        raise HttpError(400, "reason must not hold control characters (other than newlines and tabs)")
    return reason


def _duration(body: dict[str, Any]) -> float:
    value = body.get("for")
    if value is None:
        raise HttpError(400, "for is required: how long the access is needed, like '30m' or seconds")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise HttpError(400, "for must be a duration like '30m' or a number of seconds")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise HttpError(400, f"for: {exc}") from None


def _request_args(body: object) -> tuple[str, float, str, str | None]:
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    connection = _text(body, "connection")
    policy = body.get("policy")
    if policy is not None and (not isinstance(policy, str) or not policy.strip()):
        raise HttpError(400, "policy must be the name of a jit policy, or left out")
    return connection, _duration(body), _reason(body), policy.strip() if policy is not None else None


def access_json(stored: StoredRequest) -> dict[str, Any]:
    """An access request as ``GET /api/approvals/{id}`` shows it, plus ``granted_until`` (ms; set once
    it is approved)."""
    return {**approval_json(stored), "granted_until": stored.granted_until}


def access_routes(api: AccessApi) -> list[BaseRoute]:
    """The ``/api/access-requests`` and ``/api/access-grants`` routes bound to ``api``."""

    @endpoint
    async def create(request: Request) -> Response:
        principal = await api.caller(request)
        connection, seconds, reason, name = _request_args(await read_json(request))
        try:
            api.config.connection(connection)
        except KeyError:
            raise HttpError(404, f'no connection "{connection}"') from None
        try:
            policy = grantable_policy(api.config, principal, connection, name)
        except AmbiguousPolicy as exc:
            raise HttpError(400, str(exc)) from None
        except NoGrantablePolicy as exc:
            raise HttpError(403, str(exc)) from None
        if seconds > policy.max_grant:
            raise HttpError(
                400,
                f'for {span(seconds)} is longer than policy "{policy.name}" grants'
                f" (max_grant {span(policy.max_grant)})",
            )
        try:
            record = await asyncio.to_thread(
                api.approvals.open_grant,
                principal,
                connection,
                policy.name,
                reason,
                seconds,
                policy.approvers,
                policy.approvals_required,
                policy.approval_timeout,
                one_of_each_group=policy.one_of_each_group,
            )
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        except TooManyPending as exc:
            raise HttpError(429, str(exc)) from None
        stored = await asyncio.to_thread(api.approvals.store.get, record["id"])
        assert stored is not None
        by = principal_ref(principal)
        api.record(
            "access_requested",
            {
                "id": record["id"],
                "connection": connection,
                "rule": policy.name,
                "duration_ms": record["duration_ms"],
                "by": by,
            },
        )
        log.info(
            "access requested",
            extra={"request": record["id"], "connection": connection, "rule": policy.name, "by": by},
        )
        return json_response({**access_json(stored), "record": record}, 201)

    @endpoint
    async def grants(request: Request) -> Response:
        principal = await api.caller(request)
        running = await asyncio.to_thread(api.approvals.grants_of, principal)
        return json_response([g.public() for g in running])

    return [
        Route("/api/access-requests", create, methods=["POST"]),
        Route("/api/access-grants", grants, methods=["GET"]),
    ]
