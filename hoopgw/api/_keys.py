"""``/api/keys``: create, list and revoke API keys (callers must match ``gateway.admins``).

- ``POST /api/keys`` ``{"name", "groups": [...], "expires": "30d" | seconds | null}`` → 201 with the key
  (the only time it is shown); ``expires`` null or absent means 90 days, at most 366 days.
- ``GET /api/keys`` → every key, newest first, with ``status`` ``active|revoked|expired`` (never a secret).
- ``DELETE /api/keys/{name}`` (or ``POST /api/keys/{name}/revoke``) → the revoked key; ``name`` may
  also be a key id. Live sessions of the key are ended through ``on_revoke(name)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
    read_json,
    require_role,
)
from hoopgw.config import parse_duration
from hoopgw.identity import Authenticator, Principal
from hoopgw.identity._apikeys import create_key
from hoopgw.identity._keystore import DEFAULT_EXPIRY, ApiKeyStore, KeyNameTaken, KeyNotFound, check_name

log = logging.getLogger("hoopgw.api")

_FIELDS = frozenset({"name", "groups", "expires"})


@dataclass(frozen=True)
class KeyApi:
    """What the key endpoints need from the gateway."""

    store: ApiKeyStore
    authenticator: Authenticator
    admins: Sequence[str]
    audit: AuditFn | None = None
    #: Called (on the event loop) with the name of a key just revoked, to end its live sessions.
    on_revoke: Callable[[str], None] | None = None

    async def admin(self, request: Request) -> Principal:
        principal = await authenticate(request, self.authenticator, self.audit)
        require_role(principal, self.admins, "managing API keys", "gateway.admins")
        return principal

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(None, kind, payload)


def _expiry(value: object) -> float:
    if value is None:
        return DEFAULT_EXPIRY
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise HttpError(400, "expires must be a duration like '30d', a number of seconds, or null")
    return parse_duration(value)


def _create_args(body: object) -> tuple[str, list[str], float]:
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    groups = body.get("groups", [])
    if not isinstance(groups, list):
        raise HttpError(400, "groups must be a list of group names")
    try:
        name = check_name(body.get("name"))
        return name, groups, _expiry(body.get("expires"))
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None


def _admin_subject(admins: Sequence[str], name: str, groups: Sequence[str]) -> str | None:
    """The ``gateway.admins`` entry a key called ``name`` in ``groups`` would match, if any."""
    probe = Principal(subject=name, groups=frozenset(groups), auth="apikey")
    return next((a for a in admins if probe.matches(a)), None)


def key_routes(api: KeyApi) -> list[BaseRoute]:
    """The ``/api/keys`` routes bound to ``api``."""

    @endpoint
    async def create(request: Request) -> Response:
        principal = await api.admin(request)
        if principal.auth == "apikey":
            # a key minting keys would outlive its own revocation: only people create keys
            raise HttpError(403, "API keys cannot create API keys (use a person's token)")
        name, groups, expires_in = _create_args(await read_json(request))
        if admin := _admin_subject(api.admins, name, groups):
            raise HttpError(403, f"an API key cannot be a gateway admin ({admin} is in gateway.admins)")
        by = principal_ref(principal)
        try:
            record, key = await asyncio.to_thread(create_key, api.store, name, groups, expires_in, by)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        except KeyNameTaken as exc:
            raise HttpError(409, str(exc)) from None
        api.record(
            "key_created",
            {
                "id": record.id,
                "name": name,
                "groups": list(record.groups),
                "expires_at": record.expires_at,
                "by": by,
            },
        )
        log.info("api key created", extra={"subject": name, "credential_id": record.id, "by": by})
        out = record.public()
        del out["revoked_at"], out["revoked_by"]
        return json_response({**out, "key": key}, 201)

    @endpoint
    async def list_keys(request: Request) -> Response:
        await api.admin(request)
        records = await asyncio.to_thread(api.store.list_keys)
        now = time.time()
        return json_response([r.public(now) for r in records])

    @endpoint
    async def revoke(request: Request) -> Response:
        principal = await api.admin(request)
        ref = request.path_params["name"]
        by = principal_ref(principal)
        try:
            record = await asyncio.to_thread(api.store.revoke, ref, by)
        except KeyNotFound as exc:
            raise HttpError(404, str(exc)) from None
        api.record("key_revoked", {"id": record.id, "name": record.name, "by": by})
        log.info("api key revoked", extra={"subject": record.name, "credential_id": record.id, "by": by})
        if api.on_revoke is not None:
            try:
                api.on_revoke(record.name)
            except Exception:  # the key is revoked durably: report, still answer
                log.exception("ending the sessions of a revoked key failed")
        return json_response(record.public())

    return [
        Route("/api/keys", create, methods=["POST"]),
        Route("/api/keys", list_keys, methods=["GET"]),
        Route("/api/keys/{name}", revoke, methods=["DELETE"]),
        Route("/api/keys/{name}/revoke", revoke, methods=["POST"]),
    ]
