"""Policy: statement classification (parsed SQL) and the allow / approve / deny decision."""

from __future__ import annotations

from hoopgw.policy._classes import ALL, BIT, PG_CLASSES, WRITING, classes_of, mask_of

__all__ = ["ALL", "BIT", "PG_CLASSES", "WRITING", "classes_of", "mask_of"]
