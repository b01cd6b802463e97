"""Cancel keys: clients get the real backend PID with a gateway-made secret, mapped back to the real key."""

from __future__ import annotations

import secrets

from hoopgw.proxy.pg._upstream import CancelTarget


class CancelRegistry:
    """(backend pid, gateway secret) -> the upstream backend's real cancel target."""

    def __init__(self) -> None:
        self._targets: dict[tuple[int, bytes], CancelTarget] = {}

    def register(self, target: CancelTarget) -> bytes:
        """Register a live backend; return the 4-byte secret to hand to the client."""
        while True:
            secret = secrets.token_bytes(4)
            key = (target.process_id, secret)
            if key not in self._targets:
                self._targets[key] = target
                return secret

    def unregister(self, process_id: int, secret: bytes) -> None:
        self._targets.pop((process_id, secret), None)

    def lookup(self, process_id: int, secret: bytes) -> CancelTarget | None:
        return self._targets.get((process_id, secret))

    def __len__(self) -> int:
        return len(self._targets)
