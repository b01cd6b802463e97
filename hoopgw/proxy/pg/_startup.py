"""Validation of a client's StartupMessage: which parameters reach the upstream, and which are refused.

Pure functions, so they test without sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hoopgw.policy._settings import is_protected_setting, is_safe_client_encoding

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_TRUE = frozenset({"true", "on", "yes", "1", "database"})
# Parameters of the startup packet itself, never passed as settings.
_STRUCTURAL = frozenset({"user", "database", "options", "replication"})


class StartupRefused(Exception):
    """The startup packet asks for something the gateway does not allow."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class StartupRequest:
    """What a client asked for, after validation."""

    user: str
    database: str | None
    protocol_minor: int
    #: ordinary settings to pass upstream, in order (application_name, TimeZone, ... and options' -c pairs)
    settings: tuple[tuple[str, str], ...]
    #: ``_pq_.`` protocol options the gateway does not support (answered with NegotiateProtocolVersion)
    unsupported_options: tuple[str, ...] = field(default_factory=tuple)

    def get(self, name: str) -> str | None:
        """The value of a setting, case-insensitive like PostgreSQL GUC names."""
        low = name.lower()
        for key, value in self.settings:
            if key.lower() == low:
                return value
        return None


def split_options(value: str) -> list[str]:
    """Split the ``options`` startup parameter like PostgreSQL: whitespace separates, backslash escapes."""
    words: list[str] = []
    cur: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if escaped:
        cur.append("\\")
    if cur:
        words.append("".join(cur))
    return words


def parse_options(value: str) -> list[tuple[str, str]]:
    """Parse ``-c name=value`` / ``--name=value`` switches; any other switch is refused."""
    words = split_options(value)
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            assignment = words[i + 1]
            i += 2
        elif (word.startswith("-c") and len(word) > 2) or (word.startswith("--") and len(word) > 2):
            assignment = word[2:]
            i += 1
        else:
            raise StartupRefused(
                "42501",
                f'startup option "{word}" is not allowed through hoopgw',
                "only -c name=value settings may be given in options",
            )
        name, sep, setting = assignment.partition("=")
        if not sep:
            raise StartupRefused("42601", f'startup option "{assignment}" has no value (use -c name=value)')
        out.append((name.replace("-", "_"), setting))
    return out


def check_setting(name: str) -> None:
    """Refuse a setting that is malformed or protected."""
    if not _NAME.match(name):
        raise StartupRefused("42602", f'invalid setting name "{name}" in startup packet')
    if is_protected_setting(name):
        raise StartupRefused(
            "42501",
            f'setting "{name}" cannot be chosen by a client of hoopgw',
            "role, session authorization, read-only, string-parsing and logging settings are controlled "
            "by the gateway",
        )


def check_encoding(name: str, value: str) -> None:
    """Refuse a client encoding whose multi-byte characters may contain quote or backslash bytes."""
    if name.lower() == "client_encoding" and not is_safe_client_encoding(value):
        raise StartupRefused(
            "22023",
            f'client_encoding "{value}" is not supported through hoopgw',
            "use UTF8 (or another server encoding): SJIS, BIG5, GBK, UHC, GB18030 and JOHAB can hide quotes "
            "inside characters",
        )


def validate_startup(protocol: tuple[int, int], params: list[tuple[str, str]]) -> StartupRequest:
    """Validate a StartupMessage's version and parameters; raise StartupRefused with a client-facing error."""
    major, minor = protocol
    if major != 3:
        raise StartupRefused("0A000", f"unsupported frontend protocol {major}.{minor}: server supports 3.0")
    user: str | None = None
    database: str | None = None
    settings: list[tuple[str, str]] = []
    unsupported: list[str] = []
    seen: set[str] = set()
    for key, value in params:
        if key in seen:
            raise StartupRefused("08P01", f'duplicate startup parameter "{key}"')
        seen.add(key)
        if key.startswith("_pq_."):
            unsupported.append(key)
        elif key == "user":
            user = value
        elif key == "database":
            database = value or None
        elif key == "replication":
            if value.lower() in _TRUE:
                raise StartupRefused("42501", "replication connections are not allowed through hoopgw")
        elif key == "options":
            for name, setting in parse_options(value):
                check_setting(name)
                check_encoding(name, setting)
                settings.append((name, setting))
        elif key not in _STRUCTURAL:
            check_setting(key)
            check_encoding(key, value)
            settings.append((key, value))
    if not user:
        raise StartupRefused("28000", "no PostgreSQL user name specified in startup packet")
    return StartupRequest(
        user=user,
        database=database,
        protocol_minor=minor,
        settings=tuple(settings),
        unsupported_options=tuple(unsupported),
    )
