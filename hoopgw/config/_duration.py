"""Durations written as ``30s``, ``15m``, ``1h``, ``7d``, ``1h30m`` or plain seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str | float) -> float:
    """Return the number of seconds in ``text`` (``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"``, ``42``).

    Raises ValueError with a short reason for anything else, including zero and negative values.
    """
    if isinstance(text, bool):
        raise TypeError("a duration must be a number of seconds or a string like 30s, 15m, 1h, 7d")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip().lower()
        try:
            seconds = float(value)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(value):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(value) or not value:
                raise ValueError(
                    f"invalid duration {text!r}: use a number with a unit, like 30s, 15m, 1h or 7d"
                ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds
