"""Credentials inside SQL text, redacted before a statement is recorded anywhere.

``CREATE ROLE app LOGIN PASSWORD 'x'``, ``ALTER USER app WITH ENCRYPTED PASSWORD $1``, a user
mapping's ``OPTIONS (password 'x')``, a subscription's or dblink's ``'host=... password=x'``: the
gateway forwards them as they are, but the audit trail, approval requests, evidence packs and SIEM
streams get ``'***'`` in place of the value (and the bound parameter a ``PASSWORD $n`` names is
replaced too). Masking rules (docs/MASKING.md) apply on top; this needs no configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

REDACTED = "***"
#: cheap test first: most statements never mention a password
_HINT = re.compile(r"passw", re.IGNORECASE)
#: PASSWORD followed by a literal ('...', E'...', $tag$...$tag$) or a parameter ($n)
_PASSWORD = re.compile(
    r"""(?ix)
    \b(password)(\s+)
    (?:
        (?P<quoted>[Ee]?'(?:[^'\\]|''|\\.)*')
      | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*)?\$.*?\$(?P=tag)?\$)
      | \$(?P<param>[0-9]+)
    )
    """,
    re.DOTALL,
)
#: password=value inside a libpq connection string (a literal of CONNECTION / dblink / OPTIONS)
_CONNINFO = re.compile(r"(?i)\b(password\s*=\s*)(?:''(?:[^']|'''')*''|'(?:[^'\\]|\\.)*'|[^\s']+)")


def redact_sql(sql: str) -> str:
    """``sql`` with every password value in it replaced by ``***``."""
    if not _HINT.search(sql):
        return sql

    def literal(m: re.Match[str]) -> str:
        if m.group("param") is not None:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}'{REDACTED}'"

    return _CONNINFO.sub(lambda m: m.group(1) + REDACTED, _PASSWORD.sub(literal, sql))


def secret_params(sql: str) -> frozenset[int]:
    """The 0-based indexes of the parameters ``sql`` uses as passwords (``PASSWORD $n``)."""
    if not _HINT.search(sql):
        return frozenset()
    return frozenset(int(m.group("param")) - 1 for m in _PASSWORD.finditer(sql) if m.group("param"))


def redact_params(sql: str, params: Sequence[str | None] | None) -> list[str | None] | None:
    """``params`` with those ``sql`` uses as passwords replaced by ``***``."""
    if params is None:
        return None
    secret = secret_params(sql)
    return [REDACTED if i in secret and p is not None else p for i, p in enumerate(params)]


__all__ = ["REDACTED", "redact_params", "redact_sql", "secret_params"]
