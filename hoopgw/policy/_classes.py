"""PostgreSQL statement classes and their bit masks (the Rust core sees only the masks)."""

from __future__ import annotations

from collections.abc import Iterable

#: Every PostgreSQL statement class, in bit order (DESIGN.md "Policy semantics").
PG_CLASSES = ("read", "write", "write-without-where", "ddl", "dcl", "admin", "session", "unknown")
BIT = {name: 1 << i for i, name in enumerate(PG_CLASSES)}
ALL = (1 << len(PG_CLASSES)) - 1
#: Classes that change data, schema, privileges or the server: none of them allowed or approvable
#: means the upstream session is opened read-only.
WRITING = frozenset({"write", "write-without-where", "ddl", "dcl", "admin"})


def mask_of(classes: Iterable[str]) -> int:
    """The bit mask of ``classes`` (KeyError on an unknown name)."""
    mask = 0
    for name in classes:
        mask |= BIT[name]
    return mask


def classes_of(mask: int) -> frozenset[str]:
    """The class names in ``mask``."""
    return frozenset(name for name, bit in BIT.items() if mask & bit)
