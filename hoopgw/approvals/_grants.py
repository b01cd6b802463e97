"""Just-in-time access grants: which ``jit`` policy a caller may ask for, and grant ends for the engine.

A ``[[policy]]`` with ``jit = true`` counts for a caller only while they hold an approved, unexpired
``access_grant`` of it (``hoopgw access request``). These pure functions pick the policy an access
request is for and turn :meth:`ApprovalService.active_grants` into what ``policies_for`` takes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hoopgw.approvals._store import ApprovalError

if TYPE_CHECKING:
    from hoopgw.config import Config, PolicyConfig
    from hoopgw.identity import Principal


class NoGrantablePolicy(ApprovalError):
    """No ``jit`` policy (or not the one asked for) names the caller on the connection."""


class AmbiguousPolicy(ApprovalError):
    """Several ``jit`` policies name the caller on the connection and the request did not say which."""

    def __init__(self, message: str, candidates: tuple[str, ...]) -> None:
        super().__init__(message)
        self.candidates = candidates


def jit_policies(config: Config, principal: Principal, connection: str) -> list[PolicyConfig]:
    """The ``jit`` policies naming ``principal`` on ``connection``, in config order."""
    return [
        p
        for p in config.policies
        if p.jit
        and (connection in p.connections or "*" in p.connections)
        and any(principal.matches(s) for s in p.subjects)
    ]


def grantable_policy(
    config: Config, principal: Principal, connection: str, name: str | None = None
) -> PolicyConfig:
    """The ``jit`` policy an access request of ``principal`` on ``connection`` is for.

    ``name`` picks one; without it there must be exactly one. Raises :class:`NoGrantablePolicy` or
    :class:`AmbiguousPolicy` with a message for the person asking.
    """
    candidates = jit_policies(config, principal, connection)
    names = tuple(p.name for p in candidates)
    if name is not None:
        for p in candidates:
            if p.name == name:
                return p
        others = f" (jit policies naming you there: {', '.join(names)})" if names else ""
        raise NoGrantablePolicy(
            f'policy "{name}" is not a jit policy naming {principal.subject} on connection'
            f' "{connection}"{others}'
        )
    if not candidates:
        raise NoGrantablePolicy(f'no jit policy names {principal.subject} on connection "{connection}"')
    if len(candidates) > 1:
        raise AmbiguousPolicy(
            f'several jit policies name {principal.subject} on connection "{connection}":'
            f" {', '.join(names)}; say which one with policy",
            names,
        )
    return candidates[0]


def grant_ends(grants: Mapping[str, int]) -> dict[str, dt.datetime]:
    """``{policy: end in ms}`` (from ``active_grants``) as aware datetimes, for ``policies_for``."""
    return {rule: dt.datetime.fromtimestamp(until / 1000, dt.UTC) for rule, until in grants.items()}
