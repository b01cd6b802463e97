"""Who is calling: the result of authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str
    groups: frozenset[str]
    auth: Literal["token", "apikey"]
    expires_at: float | None = None
    token_id: str | None = None
    #: from the OIDC email claim (``identity.email_claim``), when the token carries one
    email: str | None = None

    def matches(self, subject_ref: str) -> bool:
        """True when a config subject (``group:NAME``, ``user:SUBJECT``, ``key:NAME``) names this caller."""
        kind, _, name = subject_ref.partition(":")
        if kind == "group":
            return name in self.groups
        if kind == "user":
            return name == self.subject and self.auth == "token"
        if kind == "key":
            return name == self.subject and self.auth == "apikey"
        return False
