"""``POST /api/approvals/callback``: Approve / Deny from a chat platform, authenticated by a shared secret.

On only when ``[approvals] callback_secret`` is set (404 otherwise). The request must be signed as Slack
signs its interactive requests — ``X-Slack-Signature`` / ``X-Slack-Request-Timestamp``, or the same
scheme under ``X-Hoopgw-Signature`` / ``X-Hoopgw-Request-Timestamp``: ``v0=`` + hex
HMAC-SHA256(secret, ``"v0:{timestamp}:{raw body}"``) — with a timestamp at most ``callback_max_age``
away from now (replay protection). The body is either

- Slack's ``block_actions`` payload (``application/x-www-form-urlencoded``, ``payload=<json>``): the
  clicked button's ``action_id`` (``approve`` | ``deny``) and ``value`` (the request id), ``user.id``;
- or JSON ``{"action": "approve"|"deny", "request_id", "user", "reason"}`` (a denial needs a reason).

The signature proves the platform sent the click, not who the user is to the gateway: the platform's
user id must be listed in ``[[approvals.callback_users]]``, which names the subject and groups the
decision is made as (an unlisted user gets 403). The decision service then applies every rule: nobody
decides their own request, only approvers decide, closed requests stay closed.

Answers ``{"ok": true, "status", "text", ...}``, or ``{"error"}`` with 400, 401 (signature missing, wrong
or stale), 403, 404, 409 (closed, or this approver approved already), 413, 415.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hoopgw.api._http import AuditFn, HttpError, endpoint, json_response, read_body
from hoopgw.approvals import ApprovalError, ApprovalService, RequestNotFound, StoredRequest
from hoopgw.approvals._webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_valid
from hoopgw.config import ApprovalsConfig
from hoopgw.config._approvals import CallbackUser
from hoopgw.identity import Principal

log = logging.getLogger("hoopgw.api")

PATH = "/api/approvals/callback"
#: a Slack block_actions payload carries the whole message it came from: a few KB, URL-encoded
MAX_CALLBACK_BODY = 128 * 1024
_MAX_ID = 64
_JSON_FIELDS = frozenset({"action", "request_id", "user", "reason"})
_ACTIONS = frozenset({"approve", "deny"})
#: (signature header, timestamp header, platform name) in the order they are looked for
_SCHEMES = (
    ("x-slack-signature", "x-slack-request-timestamp", "Slack"),
    (SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(), "callback"),
)


@dataclass(frozen=True)
class Click:
    """One decision asked for through the callback."""

    action: str
    request_id: str
    user: str
    #: how the user is shown in reasons and logs (``name (id)`` when the platform gives a name)
    label: str
    reason: str | None
    platform: str


@dataclass(frozen=True)
class CallbackApi:
    """What the callback endpoint needs from the gateway; ``secret`` None turns it off."""

    service: ApprovalService
    secret: bytes | None
    max_age: float = 300.0
    #: platform user id → who that user is to the gateway
    users: Mapping[str, CallbackUser] = field(default_factory=dict)
    audit: AuditFn | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    def from_config(
        cls, service: ApprovalService, config: ApprovalsConfig, secret: bytes | None, audit: AuditFn | None
    ) -> CallbackApi:
        """The callback of ``[approvals]`` (``secret``: the resolved ``callback_secret``)."""
        users = {u.user: u for u in config.callback_users}
        return cls(service, secret, config.callback_max_age, users, audit)

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(None, kind, payload)


def _verify(api: CallbackApi, request: Request, body: bytes) -> str:
    """Check the signature and its age; return the platform that signed. HttpError 401 otherwise."""
    assert api.secret is not None
    for sig_header, ts_header, platform in _SCHEMES:
        signature = request.headers.get(sig_header)
        if signature is None:
            continue
        timestamp = request.headers.get(ts_header, "")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise HttpError(401, f"missing or malformed {ts_header} header")
        if abs(api.clock() - int(timestamp)) > api.max_age:
            raise HttpError(401, f"stale request: signed more than {api.max_age:g} s from now")
        if not signature_valid(api.secret, timestamp, body, signature):
            raise HttpError(401, "bad signature")
        return platform
    raise HttpError(401, f"unsigned request: send {SIGNATURE_HEADER} and {TIMESTAMP_HEADER}")


def _str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise HttpError(400, f"{what} must be a non-empty string")
    return value


def _slack_click(body: bytes) -> Click:
    """The clicked button of a Slack ``block_actions`` payload."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
        payload = orjson.loads(form["payload"][0]) if list(form) == ["payload"] else None
    except (UnicodeDecodeError, ValueError, KeyError):
        payload = None
    if not isinstance(payload, dict):
        raise HttpError(400, "a form body must be payload=<JSON object> (a Slack interactive payload)")
    if payload.get("type") != "block_actions":
        raise HttpError(400, f"unsupported interactive payload type {payload.get('type')!r}")
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    user = payload.get("user")
    if not isinstance(action, dict) or not isinstance(user, dict):
        raise HttpError(400, "the payload names no action or no user")
    user_id = _str(user.get("id"), "user.id")
    name = user.get("username") or user.get("name")
    label = f"{name} ({user_id})" if isinstance(name, str) and name and name != user_id else user_id
    return Click(
        action=_str(action.get("action_id"), "actions[0].action_id"),
        request_id=_str(action.get("value"), "actions[0].value"),
        user=user_id,
        label=label,
        reason=None,
        platform="Slack",
    )


def _json_click(body: bytes, platform: str) -> Click:
    """``{"action", "request_id", "user", "reason"}``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the request body must be a JSON object")
    unknown = sorted(set(data) - _JSON_FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    reason = data.get("reason")
    if not isinstance(reason, str | None):
        raise HttpError(400, "reason must be a string")
    user = _str(data.get("user"), "user")
    return Click(
        action=_str(data.get("action"), "action"),
        request_id=_str(data.get("request_id"), "request_id"),
        user=user,
        label=user,
        reason=reason,
        platform=platform,
    )


def _parse(request: Request, body: bytes, platform: str) -> Click:
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        click = _slack_click(body)
    elif kind == "application/json":
        click = _json_click(body, platform)
    else:
        raise HttpError(415, "send application/x-www-form-urlencoded (Slack) or application/json")
    if click.action not in _ACTIONS:
        raise HttpError(400, f"action must be 'approve' or 'deny', not {click.action!r}")
    if len(click.request_id) > _MAX_ID:
        raise HttpError(404, "no such approval request")
    return click


def _refusal(after: StoredRequest | None, exc: ApprovalError) -> int:
    """The HTTP status of a decision the service refused, from the state it left."""
    if after is None or isinstance(exc, RequestNotFound):
        return 404
    if after.closed:
        return 409  # decided, expired or void already (or it expired just now)
    if "counts once" in str(exc):
        return 409  # this approver approved already
    return 403  # the requester, or not an approver


def _done(click: Click, subject: str, status: str) -> str:
    verb = "approved" if click.action == "approve" else "denied"
    if status == "pending":
        return f"{subject} {verb} request {click.request_id}; it still needs more approvals"
    return f"{subject} {verb} request {click.request_id}: it is now {status}"


def callback_routes(api: CallbackApi) -> list[BaseRoute]:
    """The ``POST /api/approvals/callback`` route bound to ``api`` (answers 404 while it is off)."""

    @endpoint
    async def callback(request: Request) -> Response:
        if api.secret is None:
            raise HttpError(404, "the approval callback is off ([approvals] callback_secret is not set)")
        body = await read_body(request, MAX_CALLBACK_BODY)
        try:
            platform = _verify(api, request, body)
        except HttpError as exc:
            client = f"{request.client.host}:{request.client.port}" if request.client else None
            log.info("approval callback refused", extra={"client": client, "reason": exc.message})
            api.record(
                "auth_failed",
                {"connection": "api", "path": PATH, "client_addr": client, "reason": exc.message},
            )
            raise
        click = _parse(request, body, platform)
        audit: dict[str, Any] = {
            "request_id": click.request_id,
            "platform": click.platform,
            "platform_user": click.user,
            "subject": None,
            "decision": click.action,
        }
        try:
            return await _decide(api, click, audit)
        except HttpError as exc:
            api.record("approval_callback", {**audit, "outcome": "refused", "error": exc.message})
            log.info("approval callback refused", extra={**audit, "reason": exc.message})
            raise

    return [Route(PATH, callback, methods=["POST"])]


async def _decide(api: CallbackApi, click: Click, audit: dict[str, Any]) -> Response:
    user = api.users.get(click.user)
    if user is None:
        raise HttpError(
            403,
            f"{click.platform} user {click.label} is not listed in [[approvals.callback_users]]:"
            " the gateway does not know who they are",
        )
    audit["subject"] = user.subject
    principal = Principal(subject=user.subject, groups=frozenset(user.groups), auth="token")
    reason = click.reason
    if reason is None and click.platform == "Slack":
        verb = "approved" if click.action == "approve" else "denied"
        reason = f"{verb} from Slack by {click.label}"
    if click.action == "deny" and not (reason or "").strip():
        raise HttpError(400, "a denial needs a reason (it is shown to the requester and kept on record)")
    try:
        record, status = await asyncio.to_thread(
            api.service.decide, click.request_id, principal, click.action, reason
        )
    except ApprovalError as exc:
        after = await asyncio.to_thread(api.service.store.get, click.request_id)
        raise HttpError(_refusal(after, exc), str(exc)) from None
    api.record("approval_callback", {**audit, "outcome": status, "decision_id": record["id"]})
    log.info("approval decided through the callback", extra={**audit, "to": status})
    text = _done(click, user.subject, status)
    return json_response(
        {"ok": True, "status": status, "text": text, "request_id": click.request_id, "decision": record}
    )
