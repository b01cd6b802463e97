"""Who is calling: the result of authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: How a caller proved who they are: an OIDC or local token, an API key, an SSH public key registered
#: to a person (``hoopgw ssh-keys add``), or an SSH certificate the gateway signed after a token login.
Auth = Literal["token", "apikey", "sshkey", "sshcert"]
#: The kinds that act for a person (``user:NAME``); only ``apikey`` acts for a service account.
PERSON_AUTH: frozenset[str] = frozenset({"token", "sshkey", "sshcert"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str
    groups: frozenset[str]
    auth: Auth
    expires_at: float | None = None
    token_id: str | None = None
    #: from the OIDC email claim (``identity.email_claim``), when the token carries one
    email: str | None = None

    @property
    def is_person(self) -> bool:
        """True for a person (token, registered SSH key or SSH certificate), False for an API key."""
        return self.auth in PERSON_AUTH

    def matches(self, subject_ref: str) -> bool:
        """True when a config subject (``group:NAME``, ``user:SUBJECT``, ``key:NAME``) names this caller.

        ``user:`` names a person however they authenticated (token, SSH key, SSH certificate);
        ``key:`` names an API key only.
        """
        kind, _, name = subject_ref.partition(":")
        if kind == "group":
            return name in self.groups
        if kind == "user":
            return name == self.subject and self.is_person
        if kind == "key":
            return name == self.subject and self.auth == "apikey"
        return False
