"""Bounded HTTP for the identity layer: small JSON documents from an OIDC issuer, never waiting long."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from hoopgw import __version__
from hoopgw.config._upstream import is_loopback_host

#: per-operation timeout (connect, read, write) and the bound on a whole request
TIMEOUT = 5.0
#: the largest issuer response read (discovery documents, key sets, token responses)
MAX_BODY = 256 * 1024


class FetchError(Exception):
    """A request to the issuer failed; ``str()`` is a short reason (no URL, no secrets)."""


def new_client(url: str, timeout: float = TIMEOUT) -> httpx.AsyncClient:
    """A client for the issuer at ``url``: no redirects, proxies from the environment except on loopback."""
    host = urlsplit(url).hostname or ""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=not is_loopback_host(host),
        headers={"User-Agent": f"hoopgw/{__version__}", "Accept": "application/json"},
    )


async def fetch_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    form: Mapping[str, str] | None = None,
    limit_s: float = TIMEOUT,
    max_bytes: int = MAX_BODY,
) -> tuple[int, Any]:
    """GET ``url`` (POST ``form`` if given) within ``limit_s``; return (status, JSON or None); FetchError."""
    try:
        async with asyncio.timeout(limit_s):
            if form is None:
                request = client.build_request("GET", url)
            else:
                request = client.build_request("POST", url, data=dict(form))
            response = await client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError(f"the response is larger than {max_bytes // 1024} KiB")
            finally:
                await response.aclose()
    except TimeoutError:
        raise FetchError(f"no complete answer within {limit_s:g} s") from None
    except httpx.TimeoutException:
        raise FetchError(f"no answer within {limit_s:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(_transport_reason(exc)) from None
    try:
        data = orjson.loads(bytes(body)) if body else None
    except orjson.JSONDecodeError:
        data = None
    return response.status_code, data


async def get_document(url: str, limit_s: float = TIMEOUT) -> Any:
    """GET a JSON document (discovery, JWKS) with a fresh client; FetchError unless the status is 200."""
    async with new_client(url, limit_s) as client:
        status, doc = await fetch_json(client, url, limit_s=limit_s)
    if status != 200:
        raise FetchError(f"HTTP {status}")
    return doc


def _transport_reason(exc: httpx.HTTPError) -> str:
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        nxt = cause.__cause__ or cause.__context__
        assert nxt is not None
        cause = nxt
    text = str(cause) or str(exc) or type(exc).__name__
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    if "Connection refused" in text or "connect call failed" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text}"[:200]
