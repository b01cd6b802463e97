"""Identity: who is calling (Principal), the local token issuer, OIDC tokens, the Authenticator, and SSH
client keys and certificates."""

from __future__ import annotations

from hoopgw.identity._apikeys import KEY_PATTERN, ApiKeyError, ApiKeyVerifier, create_key, parse_key
from hoopgw.identity._authenticator import Authenticator, Verifier
from hoopgw.identity._jwks import Discovery, IssuerKeys, discovery_url
from hoopgw.identity._keystore import ApiKeyRecord, ApiKeyStore
from hoopgw.identity._local import KEY_FILE, LEEWAY_SECONDS, LOCAL_ISSUER, MAX_TOKEN_BYTES, LocalIssuer
from hoopgw.identity._oidc import MAX_OIDC_TOKEN_BYTES, OidcVerifier
from hoopgw.identity._principal import PERSON_AUTH, Auth, Principal
from hoopgw.identity._sshauth import SshClientAuth
from hoopgw.identity._sshca import SshCertAuthority
from hoopgw.identity._sshkeys import SshKeyStore, SshKeyTaken, parse_public_key

__all__ = [
    "KEY_FILE",
    "KEY_PATTERN",
    "LEEWAY_SECONDS",
    "LOCAL_ISSUER",
    "MAX_OIDC_TOKEN_BYTES",
    "MAX_TOKEN_BYTES",
    "PERSON_AUTH",
    "ApiKeyError",
    "ApiKeyRecord",
    "ApiKeyStore",
    "ApiKeyVerifier",
    "Auth",
    "Authenticator",
    "Discovery",
    "IssuerKeys",
    "LocalIssuer",
    "OidcVerifier",
    "Principal",
    "SshCertAuthority",
    "SshClientAuth",
    "SshKeyStore",
    "SshKeyTaken",
    "Verifier",
    "create_key",
    "discovery_url",
    "parse_key",
    "parse_public_key",
]
