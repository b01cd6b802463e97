"""Session ids: fixed-length, time-sortable, lowercase Crockford base32 (16 characters)."""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 35
_LENGTH = 16  # 80 bits: 45 bits of milliseconds (until year 3084) + 35 random bits
_lock = threading.Lock()
_last = 0


def new_session_id() -> str:
    """A new id; ids made later (in this process) sort after earlier ones."""
    global _last  # process-wide monotonic counter
    value = (time.time_ns() // 1_000_000) << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS)
    with _lock:
        if value <= _last:
            value = _last + 1
        _last = value
    chars = []
    for _ in range(_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_session_id(text: str) -> bool:
    """True when ``text`` has the shape of a session id."""
    return len(text) == _LENGTH and all(c in _ALPHABET for c in text)
