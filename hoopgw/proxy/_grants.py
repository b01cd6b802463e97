"""The caller's running access grants of ``jit`` policies (any protocol's sessions)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hoopgw.identity import Principal
    from hoopgw.server import Gateway


def access_grants(gw: Gateway, principal: Principal, connection: str) -> dict[str, dt.datetime]:
    """The caller's approved, running access grants of ``jit`` policies on ``connection``: rule -> end."""
    active = getattr(gw.approvals, "active_grants", None)
    if active is None:
        return {}
    ends: dict[str, int] = active(principal, connection)
    return {rule: dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for rule, ms in ends.items()}
