"""hoopgw: an identity-aware access gateway for production data."""

from __future__ import annotations

from hoopgw.errors import (
    AuthError,
    ConfigError,
    HoopError,
    PgProtocolError,
    SecretError,
    StoreError,
    TokenError,
    UpstreamError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "HoopError",
    "PgProtocolError",
    "SecretError",
    "StoreError",
    "TokenError",
    "UpstreamError",
    "__version__",
]
