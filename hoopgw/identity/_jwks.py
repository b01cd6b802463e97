"""An OIDC issuer's discovery document and signing keys: fetched lazily, cached, refetched on rotation.

Rules (``[identity]``):

- a key set is reused for ``jwks_cache_ttl``; after that the next verification refetches it, and keeps
  the old keys if the endpoint is down;
- a ``kid`` not in the cache triggers one refetch, at most every ``jwks_refetch_interval``;
- a failed discovery is retried on a later verification, at most every ``jwks_refetch_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from hoopgw.config._upstream import is_loopback_host
from hoopgw.errors import AuthError
from hoopgw.identity._http import TIMEOUT, FetchError, get_document

log = logging.getLogger("hoopgw.identity")

#: a key set with more keys than this is cut (issuers publish a handful)
MAX_KEYS = 64
#: which JWK fits which JWS algorithm (kty, accepted crv values)
_ALG_KEYS: dict[str, tuple[str, frozenset[str | None]]] = {
    "RS256": ("RSA", frozenset({None})),
    "ES256": ("EC", frozenset({"P-256"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}


@dataclass(frozen=True, slots=True)
class Discovery:
    """The parts of ``/.well-known/openid-configuration`` hoopgw uses."""

    issuer: str
    jwks_uri: str
    token_endpoint: str | None
    device_authorization_endpoint: str | None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One public key of the issuer."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: Any

    def fits(self, alg: str) -> bool:
        """True when a token header's ``alg`` may be verified with this key (kty, crv and alg agree)."""
        if self.alg is not None and self.alg != alg:
            return False
        kty, curves = _ALG_KEYS.get(alg, ("", frozenset()))
        return self.kty == kty and self.crv in curves


def discovery_url(issuer: str) -> str:
    """Where the issuer's discovery document lives."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _check_url(value: object, what: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise FetchError(f"the discovery document has no {what}")
    url = urlsplit(value)
    host = url.hostname or ""
    if url.scheme == "https" and host:
        return value
    if url.scheme == "http" and host and is_loopback_host(host):
        return value
    raise FetchError(f"the {what} {value[:200]!r} in {where} is not an https URL")


def parse_discovery(issuer: str, doc: Any) -> Discovery:
    """Validate a discovery document for ``issuer``; raise FetchError with the reason."""
    if not isinstance(doc, dict):
        raise FetchError("the answer is not a JSON object")
    named = doc.get("issuer")
    if named != issuer:
        raise FetchError(f"it names the issuer {str(named)[:200]!r}, not the configured {issuer!r}")
    where = "the discovery document"
    token = doc.get("token_endpoint")
    device = doc.get("device_authorization_endpoint")
    return Discovery(
        issuer=issuer,
        jwks_uri=_check_url(doc.get("jwks_uri"), "jwks_uri", where),
        token_endpoint=_check_url(token, "token_endpoint", where) if token is not None else None,
        device_authorization_endpoint=(
            _check_url(device, "device_authorization_endpoint", where) if device is not None else None
        ),
    )


def parse_jwks(doc: Any) -> list[SigningKey]:
    """The usable signature keys of a JWKS document (others are skipped); FetchError if it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise FetchError('the answer is not a JWK set (no "keys" list)')
    keys: list[SigningKey] = []
    for entry in doc["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kty, crv, alg, kid = entry.get("kty"), entry.get("crv"), entry.get("alg"), entry.get("kid")
        if not isinstance(kty, str) or (alg is not None and alg not in _ALG_KEYS):
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        keys.append(
            SigningKey(
                kid=kid if isinstance(kid, str) else None,
                kty=kty,
                crv=crv if isinstance(crv, str) else None,
                alg=alg,
                key=jwk.key,
            )
        )
    return keys


class IssuerKeys:
    """Discovery and the JWKS of one issuer, cached; safe to share between concurrent verifications."""

    def __init__(
        self,
        issuer: str,
        *,
        cache_ttl: float,
        refetch_interval: float,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.cache_ttl = cache_ttl
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._discovery: Discovery | None = None
        self._discovered_at = 0.0
        self._discovery_tried_at: float | None = None
        self._discovery_error: str | None = None
        self._keys: list[SigningKey] | None = None
        self._keys_fetched_at = 0.0
        self._keys_tried_at: float | None = None
        self._keys_error: str | None = None
        self._missed_at: float | None = None

    # -- discovery --------------------------------------------------------------------------------
    async def discover(self) -> Discovery:
        """The discovery document (cached; a failure is retried at most every refetch_interval)."""
        now = self._clock()
        if self._discovery is not None and now - self._discovered_at < self.cache_ttl:
            return self._discovery
        async with self._lock:
            return await self._discover_locked()

    async def _discover_locked(self) -> Discovery:
        now = self._clock()
        cached = self._discovery
        if cached is not None and now - self._discovered_at < self.cache_ttl:
            return cached
        if self._recently(self._discovery_tried_at, now):
            if cached is not None:
                return cached  # stale but usable until the next attempt is due
            raise AuthError(self._discovery_error or "the issuer's discovery document is not available yet")
        self._discovery_tried_at = now
        url = discovery_url(self.issuer)
        try:
            found = parse_discovery(self.issuer, await get_document(url, self.timeout))
        except FetchError as exc:
            self._discovery_error = f"cannot fetch the issuer's discovery document from {url}: {exc}"
            log.warning("oidc discovery failed", extra={"issuer": self.issuer, "reason": str(exc)})
            if cached is not None:
                return cached
            raise AuthError(self._discovery_error) from None
        self._discovery, self._discovered_at, self._discovery_error = found, now, None
        return found

    # -- keys -------------------------------------------------------------------------------------
    async def keys_for(self, kid: str | None, alg: str) -> list[SigningKey]:
        """Keys that may verify a token with header ``kid``/``alg``; refetches on a cache miss (limited).

        An empty list means the issuer does not publish the key (or a refetch is not due yet; then
        ``fetch_error`` tells whether the last fetch failed). AuthError when nothing is cached and the
        keys cannot be fetched.
        """
        found, fetch = self._plan(kid, alg, self._clock())
        if not fetch and found is not None:
            return found
        async with self._lock:
            now = self._clock()
            found, fetch = self._plan(kid, alg, now)  # another task may have fetched meanwhile
            if fetch:
                if found == []:
                    self._missed_at = now  # a refetch for an unknown kid
                await self._refresh(now)
                if self._keys is not None:
                    return _matching(self._keys, kid, alg)
            if found is None:
                raise AuthError(self._keys_error or "the issuer's keys are not available yet")
            return found

    def _plan(self, kid: str | None, alg: str, now: float) -> tuple[list[SigningKey] | None, bool]:
        """(the cached keys that match, or None when nothing is cached; whether to fetch now)."""
        keys = self._keys
        tried_recently = self._recently(self._keys_tried_at, now)
        if keys is None:
            return None, not tried_recently
        found = _matching(keys, kid, alg)
        fresh = now - self._keys_fetched_at < self.cache_ttl
        if fresh and found:
            return found, False
        if tried_recently and self._keys_error is not None:
            return found, False  # the endpoint just failed: the next attempt is not due yet
        if not fresh:
            return found, not tried_recently
        return found, not self._recently(self._missed_at, now)  # an unknown kid: one refetch per interval

    async def refresh(self) -> None:
        """Fetch discovery and keys now (start-up warm-up); failures are logged and kept for later."""
        async with self._lock:
            try:
                await self._discover_locked()
            except AuthError:
                return
            await self._refresh(self._clock())

    async def _refresh(self, now: float) -> None:
        self._keys_tried_at = now
        try:
            discovery = await self._discover_locked()
        except AuthError as exc:
            self._keys_error = str(exc)  # answered until the next attempt is due
            raise
        url = discovery.jwks_uri
        try:
            keys = parse_jwks(await get_document(url, self.timeout))
        except FetchError as exc:
            self._keys_error = f"cannot fetch the issuer's keys from {url}: {exc}"
            log.warning("oidc key fetch failed", extra={"issuer": self.issuer, "reason": str(exc)})
            return  # cached keys (if any) stay in use
        self._keys, self._keys_fetched_at, self._keys_error = keys, now, None
        log.info("oidc keys fetched", extra={"issuer": self.issuer, "kids": [k.kid for k in keys]})

    @property
    def fetch_error(self) -> str | None:
        """Why the last key fetch failed (None after a success)."""
        return self._keys_error

    def _recently(self, tried_at: float | None, now: float) -> bool:
        return tried_at is not None and now - tried_at < self.refetch_interval


def _matching(keys: list[SigningKey], kid: str | None, alg: str) -> list[SigningKey]:
    if kid is None:
        return [k for k in keys if k.fits(alg)]
    return [k for k in keys if k.kid == kid]
