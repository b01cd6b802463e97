"""PostgreSQL listener: drop-in port with identity, brokered credentials and per-statement recording."""

from hoopgw.proxy.pg._cancel import CancelRegistry
from hoopgw.proxy.pg._listener import PgListener

__all__ = ["CancelRegistry", "PgListener"]
