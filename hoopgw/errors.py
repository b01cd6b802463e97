"""Exceptions raised by hoopgw.

The tree::

    HoopError
    ├── ConfigError            bad configuration (carries file, key and reason)
    ├── SecretError            an env:/file: secret reference cannot be resolved
    ├── AuthError              a credential was refused (SQLSTATE 28P01 / 28000)
    │   └── TokenError         a token is malformed, badly signed, expired or for another audience
    ├── UpstreamError          the target cannot be reached or refused the gateway (SQLSTATE 08001/08006)
    ├── StoreError             the audit store cannot be opened or written
    └── PgProtocolError        malformed PostgreSQL protocol input (SQLSTATE 08P01); raised by hoopgw._core
"""

from __future__ import annotations


class HoopError(Exception):
    """Base of every hoopgw error."""

    sqlstate: str = "XX000"


class ConfigError(HoopError):
    """A configuration mistake: ``problems`` lists (file, key, reason) triples."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{f}: {k}: {r}" for f, k, r in problems))


class SecretError(HoopError):
    """An ``env:``/``file:`` secret reference could not be resolved."""


class AuthError(HoopError):
    """The caller's credential was refused."""

    sqlstate = "28P01"


class TokenError(AuthError):
    """A token is malformed, badly signed, expired, not yet valid or for another audience."""


class UpstreamError(HoopError):
    """The target is unreachable or refused the gateway's brokered credentials."""

    sqlstate = "08001"


class StoreError(HoopError):
    """The audit store could not be opened or written."""


class PgProtocolError(HoopError):
    """Malformed PostgreSQL protocol input; raised by the Rust core."""

    sqlstate = "08P01"
