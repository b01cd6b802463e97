"""The OAuth 2.0 device authorization grant (RFC 8628), client side: what ``hoopgw login`` runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from hoopgw.errors import AuthError
from hoopgw.identity._http import FetchError, fetch_json
from hoopgw.identity._jwks import Discovery

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_DEFAULT_INTERVAL = 5.0
_SLOW_DOWN_STEP = 5.0
_MAX_INTERVAL = 60.0


class DeviceFlowError(AuthError):
    """The device flow ended without a token (denied, expired, refused, unreachable)."""


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    """The device authorization response: what the user must do, and how to poll."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _error_text(doc: Any, status: int) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        text = str(doc["error"])[:100]
        desc = doc.get("error_description")
        return f"{text}: {str(desc)[:200]}" if isinstance(desc, str) and desc else text
    return f"HTTP {status}"


async def start(
    client: httpx.AsyncClient, discovery: Discovery, client_id: str, scopes: Sequence[str]
) -> DeviceGrant:
    """Ask the issuer for a device code and a user code."""
    url = discovery.device_authorization_endpoint
    if url is None:
        raise DeviceFlowError(
            f"the issuer {discovery.issuer} does not offer the device flow "
            "(no device_authorization_endpoint in its discovery document)"
        )
    try:
        status, doc = await fetch_json(client, url, form={"client_id": client_id, "scope": " ".join(scopes)})
    except FetchError as exc:
        raise DeviceFlowError(f"cannot reach the device authorization endpoint {url}: {exc}") from None
    if status != 200:
        raise DeviceFlowError(
            f"the issuer refused the device authorization request: {_error_text(doc, status)}"
        )
    if not isinstance(doc, dict):
        raise DeviceFlowError("the device authorization response is not a JSON object")
    fields = {k: doc.get(k) for k in ("device_code", "user_code", "verification_uri")}
    missing = [k for k, v in fields.items() if not isinstance(v, str) or not v]
    if missing:
        raise DeviceFlowError(f"the device authorization response lacks {', '.join(missing)}")
    complete = doc.get("verification_uri_complete")
    expires_in, interval = doc.get("expires_in"), doc.get("interval", _DEFAULT_INTERVAL)
    return DeviceGrant(
        device_code=str(fields["device_code"]),
        user_code=str(fields["user_code"]),
        verification_uri=str(fields["verification_uri"]),
        verification_uri_complete=complete if isinstance(complete, str) and complete else None,
        expires_in=float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 600.0,
        interval=min(_MAX_INTERVAL, max(1.0, float(interval) if isinstance(interval, int | float) else 5.0)),
    )


async def poll(
    client: httpx.AsyncClient,
    discovery: Discovery,
    grant: DeviceGrant,
    client_id: str,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, Any]:
    """Poll the token endpoint until the user decides or the code expires; return the token response."""
    url = discovery.token_endpoint
    if url is None:
        raise DeviceFlowError(
            f"the issuer {discovery.issuer} has no token_endpoint in its discovery document"
        )
    form = {"grant_type": DEVICE_GRANT, "device_code": grant.device_code, "client_id": client_id}
    interval = grant.interval
    expires_at = time.monotonic() + grant.expires_in
    while True:
        await sleep(interval)
        if time.monotonic() > expires_at:
            raise DeviceFlowError("the login code expired before it was approved; run `hoopgw login` again")
        try:
            status, doc = await fetch_json(client, url, form=form)
        except FetchError as exc:
            raise DeviceFlowError(f"cannot reach the token endpoint {url}: {exc}") from None
        if status == 200:
            if not isinstance(doc, dict):
                raise DeviceFlowError("the token response is not a JSON object")
            return doc
        error = doc.get("error") if isinstance(doc, dict) else None
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval = min(_MAX_INTERVAL, interval + _SLOW_DOWN_STEP)
            continue
        if error == "expired_token":
            raise DeviceFlowError("the login code expired before it was approved; run `hoopgw login` again")
        if error == "access_denied":
            raise DeviceFlowError("the login was denied at the issuer")
        raise DeviceFlowError(f"the issuer refused the login: {_error_text(doc, status)}")


def pick_token(response: dict[str, Any]) -> str:
    """The ID token of a token response, or its access token when there is none."""
    for name in ("id_token", "access_token"):
        value = response.get(name)
        if isinstance(value, str) and value:
            return value
    raise DeviceFlowError("the token response carries neither an id_token nor an access_token")
