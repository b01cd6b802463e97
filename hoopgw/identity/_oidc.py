"""OIDC tokens: JWTs signed by the configured issuer, checked against its published keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jwt

from hoopgw.errors import AuthError, TokenError
from hoopgw.identity._jwks import IssuerKeys, SigningKey
from hoopgw.identity._local import looks_like_jwt
from hoopgw.identity._principal import Principal

if TYPE_CHECKING:
    from hoopgw.config import IdentityConfig

#: longer secrets are refused before any parsing (real ID tokens are a few KiB)
MAX_OIDC_TOKEN_BYTES = 16 * 1024
_REQUIRED = ["iss", "aud", "exp"]
_MAX_SUBJECT = 1024


def _shown(value: object) -> str:
    """A header value for an error message: short, printable, quoted."""
    return repr(str(value)[:40])


class OidcVerifier:
    """Verifies tokens from ``identity.issuer`` (discovery, JWKS with rotation, claim checks)."""

    def __init__(self, identity: IdentityConfig, keys: IssuerKeys | None = None) -> None:
        self.cfg = identity
        self.issuer = identity.issuer
        self.algorithms: Sequence[str] = identity.algorithms
        self.keys = keys or IssuerKeys(
            identity.issuer,
            cache_ttl=identity.jwks_cache_ttl,
            refetch_interval=identity.jwks_refetch_interval,
        )

    def accepts(self, secret: str) -> bool:
        """JWT-shaped secrets."""
        return looks_like_jwt(secret)

    async def warm_up(self) -> None:
        """Fetch discovery and keys ahead of the first login (failures only logged)."""
        await self.keys.refresh()

    async def verify(self, secret: str) -> Principal:
        """Check signature, issuer, audience, expiry and not-before; raise TokenError or AuthError."""
        if len(secret) > MAX_OIDC_TOKEN_BYTES:
            raise TokenError(f"token is too long (more than {MAX_OIDC_TOKEN_BYTES // 1024} KiB)")
        try:
            header = jwt.get_unverified_header(secret)
            unverified = jwt.decode(secret, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError("token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
            raise TokenError(f"token algorithm {_shown(alg)} is not accepted")
        if alg not in self.algorithms:
            raise TokenError(
                f"token algorithm {_shown(alg)} is not accepted (identity.algorithms: "
                f"{', '.join(self.algorithms)})"
            )
        if kid is not None and not isinstance(kid, str):
            raise TokenError("token key id (kid) is not a string")
        # Tokens of other issuers are refused before any key fetch (they must not trigger refetches).
        if unverified.get("iss") != self.issuer:
            if "iss" not in unverified:
                raise TokenError("token lacks the 'iss' claim")
            raise TokenError(f"token was not issued by {self.issuer!r}")
        keys = await self.keys.keys_for(kid, alg)
        if not keys:
            known = "" if kid is None else f" (kid {_shown(kid)})"
            problem = self.keys.fetch_error
            if problem:
                raise AuthError(f"token was signed by a key that is not cached{known}; {problem}")
            raise TokenError(f"token was signed by a key the issuer does not publish{known}")
        fitting = [k for k in keys if k.fits(alg)]
        if not fitting:
            raise TokenError(f"token algorithm {_shown(alg)} does not match the issuer's key {_shown(kid)}")
        claims = self._decode(secret, alg, fitting)
        return self._principal(claims)

    def _decode(self, token: str, alg: str, keys: list[SigningKey]) -> dict[str, Any]:
        for i, key in enumerate(keys):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=self.cfg.audience,
                    issuer=self.issuer,
                    leeway=self.cfg.leeway,
                    options={"require": _REQUIRED},
                )
            except jwt.InvalidSignatureError:
                if i + 1 < len(keys):
                    continue  # no kid in the header: try the next key that fits
                raise TokenError("token signature is invalid") from None
            except jwt.ExpiredSignatureError:
                raise TokenError("token has expired") from None
            except jwt.ImmatureSignatureError:
                raise TokenError("token is not yet valid") from None
            except jwt.InvalidAudienceError:
                raise TokenError(
                    f"token is not for this gateway (audience is not {self.cfg.audience!r})"
                ) from None
            except jwt.InvalidIssuerError:
                raise TokenError(f"token was not issued by {self.issuer!r}") from None
            except jwt.MissingRequiredClaimError as exc:
                raise TokenError(f"token lacks the {exc.claim!r} claim") from None
            except jwt.PyJWTError:
                raise TokenError("token is malformed") from None
            return claims
        raise TokenError("token signature is invalid")

    def _principal(self, claims: dict[str, Any]) -> Principal:
        cfg = self.cfg
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise TokenError("token 'exp' claim is not a number")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1:
            # OIDC Core 3.1.3.7: with several audiences the authorized party must be this client
            client = cfg.client_id or cfg.audience
            if claims.get("azp") not in (cfg.audience, client):
                raise TokenError("token has several audiences and was not issued to this gateway (azp)")
        for name, accepted in cfg.required_claims.items():
            if claims.get(name) not in accepted:
                raise TokenError(
                    f"token {name!r} claim is not one this gateway accepts (identity.required_claims)"
                )
        subject = claims.get(cfg.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise TokenError(f"token has no {cfg.subject_claim!r} claim naming the user")
        if len(subject) > _MAX_SUBJECT:
            raise TokenError(f"token {cfg.subject_claim!r} claim is too long")
        groups = _claim(claims, cfg.groups_claim)
        if groups is None:
            group_set: frozenset[str] = frozenset()
        elif isinstance(groups, str):
            group_set = frozenset({groups})
        elif isinstance(groups, list) and all(isinstance(g, str) for g in groups):
            group_set = frozenset(groups)
        else:
            raise TokenError(f"token {cfg.groups_claim!r} claim is not a string or a list of strings")
        email = claims.get(cfg.email_claim) if cfg.email_claim else None
        jti = claims.get("jti")
        return Principal(
            subject=subject,
            groups=group_set,
            auth="token",
            expires_at=float(claims["exp"]),
            token_id=jti if isinstance(jti, str) else None,
            email=email if isinstance(email, str) else None,
        )


def _claim(claims: dict[str, Any], name: str) -> Any:
    """``claims[name]``, or a dotted path into nested objects (``realm_access.roles``) if absent."""
    if name in claims or "." not in name:
        return claims.get(name)
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
