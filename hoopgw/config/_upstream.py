"""Upstream targets written as URLs: postgresql://, ssh://, http(s)://."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from hoopgw.config._listen import check_host
from hoopgw.config._secrets import INLINE_SECRET
from hoopgw.config._types import MODEL_CONFIG, ConfigPath, Seconds

PG_QUERY_PARAMS = ("sslmode", "sslrootcert", "connect_timeout")


def _split(text: object, schemes: tuple[str, ...], example: str) -> Any:
    if not isinstance(text, str):
        raise PydanticCustomError("url", "must be a URL like {example}", {"example": example})
    url = urlsplit(text)
    if url.scheme not in schemes:
        raise PydanticCustomError(
            "url",
            "URL scheme must be {schemes} (e.g. {example})",
            {"schemes": " or ".join(schemes), "example": example},
        )
    if url.password is not None:
        raise PydanticCustomError("url", INLINE_SECRET + " (remove the password from the URL)")
    try:
        url.port  # noqa: B018 - validates the port
    except ValueError:
        raise PydanticCustomError("url", "port must be a number from 1 to 65535") from None
    if not url.hostname:
        raise PydanticCustomError("url", "URL needs a host (e.g. {example})", {"example": example})
    try:
        check_host(url.hostname)
    except ValueError as exc:
        raise PydanticCustomError("url", str(exc)) from None
    if url.fragment:
        raise PydanticCustomError("url", "URL must not have a #fragment")
    return url


class PgUpstream(BaseModel):
    """The PostgreSQL server behind a connection (from ``postgresql://user@host:port/db?...``)."""

    model_config = MODEL_CONFIG

    host: str
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = Field(min_length=1)
    database: str = Field(min_length=1)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: ConfigPath | None = None
    connect_timeout: Seconds = 10.0

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: object, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        example = "postgresql://app@db.internal:5432/bank?sslmode=prefer"
        url = _split(value, ("postgresql", "postgres"), example)
        if not url.username:
            raise PydanticCustomError("url", "URL needs a user name (e.g. {example})", {"example": example})
        if url.path.count("/") > 1:
            raise PydanticCustomError("url", "URL path must be just /DATABASE")
        user = unquote(url.username)
        out: dict[str, Any] = {"host": url.hostname, "user": user, "database": unquote(url.path[1:]) or user}
        if url.port is not None:
            out["port"] = url.port
        seen: set[str] = set()
        for key, val in parse_qsl(url.query, keep_blank_values=True):
            if key not in PG_QUERY_PARAMS:
                raise PydanticCustomError(
                    "url",
                    "unknown URL parameter {key} (known: {known})",
                    {"key": repr(key), "known": ", ".join(PG_QUERY_PARAMS)},
                )
            if key in seen:
                raise PydanticCustomError("url", "URL parameter {key} given twice", {"key": repr(key)})
            seen.add(key)
            out[key] = val
        return out


class SshUpstream(BaseModel):
    """The SSH server behind a connection (from ``ssh://user@host:port``)."""

    model_config = MODEL_CONFIG

    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: object) -> Any:
        if not isinstance(value, str):
            return value
        example = "ssh://deploy@core.internal:22"
        url = _split(value, ("ssh",), example)
        if not url.username:
            raise PydanticCustomError("url", "URL needs a user name (e.g. {example})", {"example": example})
        if url.path not in ("", "/") or url.query:
            raise PydanticCustomError("url", "ssh URL takes no path or parameters")
        out: dict[str, Any] = {"host": url.hostname, "user": unquote(url.username)}
        if url.port is not None:
            out["port"] = url.port
        return out


def check_http_url(value: object) -> str:
    """Validate an http(s) upstream URL (no credentials inside)."""
    example = "https://api.internal:6443"
    url = _split(value, ("https", "http"), example)
    if url.username:
        raise PydanticCustomError("url", INLINE_SECRET + " (remove the user from the URL)")
    return str(value)


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
