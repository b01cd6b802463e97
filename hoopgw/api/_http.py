"""Pieces every API endpoint shares: JSON errors, bounded JSON bodies, bearer authentication, roles."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hoopgw.errors import AuthError, HoopError
from hoopgw.identity import Authenticator, Principal

log = logging.getLogger("hoopgw.api")

MAX_BODY = 16 * 1024
#: a request body must arrive whole within this many seconds (a trickling client holds a connection)
BODY_TIMEOUT_S = 10.0
#: Bearer credentials longer than this are refused unread (OIDC JWTs are a few KB).
MAX_CREDENTIAL = 16 * 1024
_CHALLENGE = 'Bearer realm="hoopgw"'

Handler = Callable[[Request], Awaitable[Response]]
#: ``audit(session_id, kind, payload)``: the gateway's ``AuditWriter.event``.
AuditFn = Callable[[str | None, str, dict[str, Any]], None]


class HttpError(Exception):
    """Answer with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (orjson)."""
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type="application/json")


def endpoint(handler: Handler) -> Handler:
    """Turn HttpError raised by ``handler`` into its JSON answer."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except HttpError as exc:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        except HoopError as exc:  # e.g. the store cannot be written: say so, as JSON
            log.error("api request failed", extra={"path": request.url.path, "error": str(exc)})  # noqa: TRY400
            return json_response({"error": f"the gateway failed: {exc}"}, 500)

    return wrapped


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body: 413 beyond ``limit`` bytes (read no further), 408 unless it has all arrived
    within :data:`BODY_TIMEOUT_S`."""
    too_big = HttpError(413, f"the request body is larger than {limit} bytes")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise too_big
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_big
    except TimeoutError:
        raise HttpError(
            408, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s", {"Connection": "close"}
        ) from None
    return bytes(body)


async def read_json(request: Request, limit: int = MAX_BODY) -> Any:
    """The request body as JSON; 413 beyond ``limit`` bytes (read no further), 408 when it trickles in
    slower than :data:`BODY_TIMEOUT_S`, 400 if not JSON."""
    body = await read_body(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, "the request body is not valid JSON") from None


def unauthorized() -> HttpError:
    """The one 401 answer: it never says what was wrong with the credential."""
    return HttpError(
        401,
        "authentication required: send 'Authorization: Bearer <token or API key>'",
        {"WWW-Authenticate": _CHALLENGE},
    )


async def authenticate(
    request: Request, authenticator: Authenticator, audit: AuditFn | None = None
) -> Principal:
    """The caller behind the request's bearer credential; 401 when it is missing or refused."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_CREDENTIAL:
        raise unauthorized()
    try:
        return await authenticator.authenticate(credential)
    except AuthError as exc:
        client = f"{request.client.host}:{request.client.port}" if request.client else None
        log.info("api authentication failed", extra={"client": client, "reason": str(exc)})
        if audit is not None:
            audit(
                None,
                "auth_failed",
                {"connection": "api", "path": request.url.path, "client_addr": client, "reason": str(exc)},
            )
        raise unauthorized() from None


def require_role(principal: Principal, subjects: Sequence[str], what: str, setting: str) -> None:
    """403 unless ``principal`` matches one of ``subjects`` (``group:``/``user:``/``key:`` references)."""
    if not any(principal.matches(s) for s in subjects):
        raise HttpError(403, f"forbidden: {what} needs a subject listed in {setting}")


def principal_ref(principal: Principal) -> str:
    """``user:NAME`` for token holders, ``key:NAME`` for API keys (the config's subject syntax)."""
    return f"{'key' if principal.auth == 'apikey' else 'user'}:{principal.subject}"
