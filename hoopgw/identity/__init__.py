"""Identity: who is calling (Principal), the local token issuer, and the Authenticator."""

from __future__ import annotations

from hoopgw.identity._authenticator import Authenticator, Verifier
from hoopgw.identity._local import KEY_FILE, LEEWAY_SECONDS, LOCAL_ISSUER, MAX_TOKEN_BYTES, LocalIssuer
from hoopgw.identity._principal import Principal

__all__ = [
    "KEY_FILE",
    "LEEWAY_SECONDS",
    "LOCAL_ISSUER",
    "MAX_TOKEN_BYTES",
    "Authenticator",
    "LocalIssuer",
    "Principal",
    "Verifier",
]
