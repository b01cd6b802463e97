"""The local issuer: gateway-signed EdDSA JWTs for the demo and single-machine use."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoopgw.errors import TokenError
from hoopgw.identity._keyfile import load_or_create_key
from hoopgw.identity._principal import Principal

LOCAL_ISSUER = "hoopgw-local"
KEY_FILE = "issuer_ed25519.pem"
MAX_TOKEN_BYTES = 512
LEEWAY_SECONDS = 30
_ALG = "EdDSA"
_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


def looks_like_jwt(secret: str) -> bool:
    """Three dot-separated base64url parts (cheap shape test, no decoding)."""
    return secret.count(".") == 2 and secret.startswith("eyJ")


class LocalIssuer:
    """Issues and verifies tokens signed by the key in ``data_dir/issuer_ed25519.pem``."""

    def __init__(self, data_dir: Path, audience: str) -> None:
        self.data_dir = Path(data_dir)
        self.audience = audience
        self.key_path = self.data_dir / KEY_FILE
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None
        self._kid = ""

    def _private_key(self) -> tuple[Ed25519PrivateKey, str]:
        with self._lock:
            if self._key is None:
                self._key = load_or_create_key(self.key_path)
                raw = self._key.public_key().public_bytes(
                    serialization.Encoding.Raw, serialization.PublicFormat.Raw
                )
                self._kid = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:9]).decode()
            return self._key, self._kid

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The verification key (creates the key pair on first use)."""
        return self._private_key()[0].public_key()

    @property
    def kid(self) -> str:
        """Key id carried in token headers (a digest of the public key)."""
        return self._private_key()[1]

    def issue(self, subject: str, groups: Iterable[str], ttl_seconds: float) -> str:
        """A signed token for ``subject`` in ``groups`` valid for ``ttl_seconds``; ValueError if too long."""
        if not subject:
            raise ValueError("the subject must not be empty")
        if ttl_seconds <= 0:
            raise ValueError("the token lifetime must be positive")
        key, kid = self._private_key()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": LOCAL_ISSUER,
            "aud": self.audience,
            "sub": subject,
            "groups": sorted(set(groups)),
            "iat": now,
            "nbf": now,
            "exp": now + max(1, round(ttl_seconds)),
            "jti": secrets.token_urlsafe(9),
        }
        token = jwt.encode(claims, key, algorithm=_ALG, headers={"kid": kid})
        if len(token.encode()) >= MAX_TOKEN_BYTES:
            raise ValueError(
                f"the token would be {len(token)} bytes; tokens must stay under {MAX_TOKEN_BYTES} bytes "
                "(use a shorter subject or fewer groups)"
            )
        return token

    def verify(self, token: str) -> Principal:
        """Check signature, issuer, audience, expiry; raises TokenError (never echoing the token)."""
        key, kid = self._private_key()
        if len(token) > 4 * MAX_TOKEN_BYTES:
            raise TokenError("token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("token is malformed") from None
        alg = header.get("alg")
        if alg != _ALG:
            raise TokenError(f"token algorithm {str(alg)[:20]!r} is not accepted (only {_ALG})")
        if header.get("kid") not in (None, kid):
            raise TokenError("token was signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.public_key(),
                algorithms=[_ALG],
                audience=self.audience,
                issuer=LOCAL_ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token is not yet valid") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"token is not for this gateway (audience is not {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise TokenError(f"token was not issued by {LOCAL_ISSUER!r}") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise TokenError("token is malformed") from None
        return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    sub, groups, exp, jti = claims["sub"], claims.get("groups", []), claims["exp"], claims["jti"]
    if not isinstance(sub, str) or not sub:
        raise TokenError("token subject is not a string")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise TokenError("token groups claim is not a list of strings")
    if not isinstance(jti, str):
        raise TokenError("token id (jti) is not a string")
    return Principal(subject=sub, groups=frozenset(groups), auth="token", expires_at=float(exp), token_id=jti)
