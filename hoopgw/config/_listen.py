"""Listen addresses: ``HOST:PORT``, IPv6 in brackets (``[::1]:5432``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?\Z")
_WILDCARDS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - recognising wildcards, not binding


def parse_port(text: str) -> int:
    """Parse a TCP port 1-65535."""
    if not text.isdigit():
        raise ValueError("port must be a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError("port must be a number from 1 to 65535")
    return port


def check_host(host: str) -> str:
    """Validate a host name, IPv4 or IPv6 address (without brackets); return it unchanged."""
    if not host:
        raise ValueError("host is empty")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or not _HOSTNAME.match(host):
            raise ValueError(f"invalid host {host!r}") from None
    return host


@dataclass(frozen=True, slots=True)
class Listen:
    """A TCP listen address."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse ``HOST:PORT`` / ``[IPV6]:PORT``; raises ValueError with the reason."""
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError('expected "[IPV6]:PORT", e.g. "[::1]:5432"')
            host, port = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"invalid IPv6 address {host!r}") from None
        else:
            host, sep, port = text.rpartition(":")
            if not sep:
                raise ValueError('expected "HOST:PORT", e.g. "127.0.0.1:15432"')
            if ":" in host:
                raise ValueError('IPv6 addresses need brackets: "[::1]:5432"')
            check_host(host)
        return cls(host, parse_port(port))

    @property
    def is_wildcard(self) -> bool:
        """True for 0.0.0.0 and [::] (every interface)."""
        return self.host in _WILDCARDS

    def conflicts_with(self, other: Listen) -> bool:
        """True when both cannot be bound at once (same port, same or wildcard host)."""
        if self.port != other.port:
            return False
        return self.host == other.host or self.is_wildcard or other.is_wildcard

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_listen,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def _validate_listen(value: object) -> Listen:
    if isinstance(value, Listen):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("listen", 'must be a string "HOST:PORT"')
    try:
        return Listen.parse(value)
    except ValueError as exc:
        raise PydanticCustomError("listen", str(exc)) from None
