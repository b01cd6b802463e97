"""Policy: statement classification (parsed SQL) and the allow / approve / deny decision.

The classifier (``hoopgw.policy._classify``) and the engine (``hoopgw.policy._engine``) are imported
from their modules: the config schema imports this package, and the classifier imports the config.
"""

from __future__ import annotations

from hoopgw.policy._classes import ALL, BIT, PG_CLASSES, WRITING, classes_of, mask_of
from hoopgw.policy._functions import DEFAULT_ADMIN_FUNCTIONS, DEFAULT_WRITE_FUNCTIONS
from hoopgw.policy._settings import (
    PROTECTED_PREFIXES,
    PROTECTED_SETTINGS,
    is_protected_setting,
    is_safe_client_encoding,
)

__all__ = [
    "ALL",
    "BIT",
    "DEFAULT_ADMIN_FUNCTIONS",
    "DEFAULT_WRITE_FUNCTIONS",
    "PG_CLASSES",
    "PROTECTED_PREFIXES",
    "PROTECTED_SETTINGS",
    "WRITING",
    "classes_of",
    "is_protected_setting",
    "is_safe_client_encoding",
    "mask_of",
]
