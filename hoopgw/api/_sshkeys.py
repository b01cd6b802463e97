"""``/api/ssh-keys`` and ``/api/ssh/certificate``: SSH client identities (docs/SSH.md).

- ``POST /api/ssh-keys`` ``{"subject", "groups": [...], "public_key": "ssh-ed25519 AAAA... comment"}``
  (admins, with a person's token) → 201 with the registered key; ``id`` is its SHA256 fingerprint.
- ``GET /api/ssh-keys`` (admins and auditors) → every key, newest first, removed ones too (``status``
  ``active|removed``).
- ``DELETE /api/ssh-keys/{id}`` (admins) → the removed key; ``id`` is the fingerprint (``SHA256:``
  optional; URL-encode its ``/`` and ``+``). Logins with it are refused from then on.
- ``POST /api/ssh/certificate`` ``{"public_key"}`` (any person with a token; not an API key) → 201
  ``{"certificate", "valid_before", "key_id", "serial", "fingerprint", "subject"}``: an OpenSSH user
  certificate signed by the gateway's SSH user CA for ``[ssh] certificate_ttl`` (default 8 h).

Each registration, removal and certificate is an audit event (``ssh_key_added``, ``ssh_key_removed``,
``ssh_certificate_issued``) with the fingerprint and subject; no private key ever reaches the gateway.
"""

from __future__ import annotations

import asyncio
import logging
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
from hoopgw.identity import Authenticator, Principal
from hoopgw.identity._sshca import SshCertAuthority
from hoopgw.identity._sshkeys import SshKeyStore, SshKeyTaken

log = logging.getLogger("hoopgw.api")

#: the lifetime of certificates when none is given (the default of ``[ssh] certificate_ttl``)
DEFAULT_CERTIFICATE_TTL = 8 * 3600.0
_ADD_FIELDS = frozenset({"subject", "groups", "public_key"})
_CERT_FIELDS = frozenset({"public_key"})


@dataclass(frozen=True)
class SshKeyApi:
    """What the SSH identity endpoints need from the gateway."""

    store: SshKeyStore
    ca: SshCertAuthority
    authenticator: Authenticator
    admins: Sequence[str]
    auditors: Sequence[str] = ()
    audit: AuditFn | None = None
    certificate_ttl: float = DEFAULT_CERTIFICATE_TTL
    #: Called (on the event loop) with the fingerprint of a key just removed, to end its live sessions.
    on_remove: Callable[[str], None] | None = None

    async def caller(self, request: Request) -> Principal:
        return await authenticate(request, self.authenticator, self.audit)

    async def admin(self, request: Request) -> Principal:
        principal = await self.caller(request)
        require_role(principal, self.admins, "managing SSH keys", "gateway.admins")
        return principal

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(None, kind, payload)


def _body(body: object, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise HttpError(400, f"unknown field(s): {', '.join(unknown)}")
    return body


def _public_key(body: dict[str, Any]) -> str:
    value = body.get("public_key")
    if not isinstance(value, str) or not value.strip():
        raise HttpError(400, "public_key is required: one OpenSSH public key line (the .pub file)")
    return value


def sshkey_routes(api: SshKeyApi) -> list[BaseRoute]:
    """The ``/api/ssh-keys`` and ``/api/ssh/certificate`` routes bound to ``api``."""

    @endpoint
    async def add(request: Request) -> Response:
        principal = await api.admin(request)
        if not principal.is_person:
            # a key registering login keys would outlive its own revocation: only people do this
            raise HttpError(403, "API keys cannot register SSH keys (use a person's token)")
        body = _body(await read_json(request), _ADD_FIELDS)
        subject, groups = body.get("subject"), body.get("groups", [])
        if not isinstance(groups, list):
            raise HttpError(400, "groups must be a list of group names")
        if not isinstance(subject, str):
            raise HttpError(400, "subject is required: the person the key logs in as")
        by = principal_ref(principal)
        try:
            added = await asyncio.to_thread(api.store.add, subject, groups, _public_key(body), by)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        except SshKeyTaken as exc:
            raise HttpError(409, str(exc)) from None
        api.record(
            "ssh_key_added",
            {
                "fingerprint": added["id"],
                "subject": added["subject"],
                "groups": added["groups"],
                "algorithm": added["algorithm"],
                "comment": added["comment"],
                "by": by,
            },
        )
        log.info("ssh key added", extra={"subject": added["subject"], "credential_id": added["id"], "by": by})
        return json_response(added, 201)

    @endpoint
    async def list_keys(request: Request) -> Response:
        principal = await api.caller(request)
        require_role(
            principal, (*api.admins, *api.auditors), "listing SSH keys", "gateway.admins or gateway.auditors"
        )
        return json_response(await asyncio.to_thread(api.store.list))

    @endpoint
    async def remove(request: Request) -> Response:
        principal = await api.admin(request)
        ref = request.path_params["id"]
        by = principal_ref(principal)
        if not await asyncio.to_thread(api.store.remove, ref, by):
            raise HttpError(404, f"no registered SSH key {ref!r} (or it is removed already)")
        removed = await asyncio.to_thread(api.store.removed, ref)
        assert removed is not None
        api.record("ssh_key_removed", {"fingerprint": removed.id, "subject": removed.subject, "by": by})
        log.info("ssh key removed", extra={"subject": removed.subject, "credential_id": removed.id, "by": by})
        if api.on_remove is not None:
            try:
                api.on_remove(removed.id)
            except Exception:  # the key is removed durably: report, still answer
                log.exception("ending the sessions of a removed SSH key failed")
        return json_response(removed.public())

    @endpoint
    async def certificate(request: Request) -> Response:
        principal = await api.caller(request)
        if not principal.is_person:
            raise HttpError(
                403,
                "SSH certificates are for people who logged in (hoopgw login): an API key logs in to "
                "SSH with itself as the password",
            )
        body = _body(await read_json(request), _CERT_FIELDS)
        try:
            issued = await asyncio.to_thread(api.ca.issue, principal, _public_key(body), api.certificate_ttl)
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        by = principal_ref(principal)
        api.record(
            "ssh_certificate_issued",
            {
                "fingerprint": issued.fingerprint,
                "subject": principal.subject,
                "groups": sorted(principal.groups),
                "serial": issued.serial,
                "valid_before": issued.valid_before,
                "by": by,
            },
        )
        log.info(
            "ssh certificate issued",
            extra={"subject": principal.subject, "credential_id": issued.fingerprint, "by": by},
        )
        return json_response(
            {
                "certificate": issued.certificate,
                "fingerprint": issued.fingerprint,
                "subject": principal.subject,
                "key_id": issued.key_id,
                "serial": issued.serial,
                "valid_after": issued.valid_after,
                "valid_before": issued.valid_before,
            },
            201,
        )

    return [
        Route("/api/ssh-keys", add, methods=["POST"]),
        Route("/api/ssh-keys", list_keys, methods=["GET"]),
        Route("/api/ssh-keys/{id:path}", remove, methods=["DELETE"]),
        Route("/api/ssh/certificate", certificate, methods=["POST"]),
    ]
