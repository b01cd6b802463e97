"""Authenticator: turns a presented secret (token, later API key) into a Principal."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from hoopgw.audit._db import Store
from hoopgw.errors import AuthError
from hoopgw.identity._apikeys import ApiKeyVerifier
from hoopgw.identity._keystore import ApiKeyStore
from hoopgw.identity._local import LocalIssuer, looks_like_jwt
from hoopgw.identity._oidc import OidcVerifier
from hoopgw.identity._principal import Principal

if TYPE_CHECKING:
    from hoopgw.config import Config

log = logging.getLogger("hoopgw.identity")


class Verifier(Protocol):
    """One way of proving identity (local tokens; later API keys and OIDC)."""

    def accepts(self, secret: str) -> bool:
        """Cheap shape test: does this secret look like one of mine?"""
        ...

    async def verify(self, secret: str) -> Principal:
        """Full check (may fetch keys); raises AuthError/TokenError."""
        ...


class _LocalTokens:
    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer

    def accepts(self, secret: str) -> bool:
        return looks_like_jwt(secret)

    async def verify(self, secret: str) -> Principal:
        return self.issuer.verify(secret)


class Authenticator:
    """Tries each configured verifier in order; the first that accepts the secret decides."""

    def __init__(self, verifiers: list[Verifier]) -> None:
        self.verifiers = verifiers

    @classmethod
    def from_config(cls, config: Config) -> Authenticator:
        """Build from ``[identity]``: the local issuer, or an OIDC issuer."""
        verifiers: list[Verifier] = []
        if config.identity.issuer == "local":
            verifiers.append(_LocalTokens(LocalIssuer(config.gateway.data_dir, config.identity.audience)))
        else:
            verifiers.append(OidcVerifier(config.identity))
        # with every issuer; the keys live in the audit store (shared by nodes on a PostgreSQL one)
        verifiers.append(ApiKeyVerifier(ApiKeyStore(Store.for_config(config))))
        return cls(verifiers)

    async def warm_up(self) -> None:
        """Fetch what verifiers need ahead of the first login (OIDC discovery and keys); never raises."""
        for verifier in self.verifiers:
            if isinstance(verifier, OidcVerifier):
                try:
                    await verifier.warm_up()
                except Exception:  # a start-up fetch must never stop the gateway
                    log.exception("identity warm-up failed")

    async def authenticate(self, secret: str) -> Principal:
        """The caller behind ``secret``; raises AuthError (TokenError for bad tokens)."""
        if not secret:
            raise AuthError("no credential given (send a token as the password)")
        for verifier in self.verifiers:
            if verifier.accepts(secret):
                return await verifier.verify(secret)
        raise AuthError("credential not recognised (expected a token issued by this gateway)")
