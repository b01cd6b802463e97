"""A per-source budget for events anyone can cause without credentials (failed logins).

Every refused login is worth recording, but an unauthenticated client must not be able to fill the
audit store: each source (client host) may write ``per_window`` such events per ``window`` seconds;
the rest are counted, and the next event recorded for that source says how many were left out.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class EventBudget:
    """Decides which events of a source are recorded; never blocks, bounded in memory."""

    def __init__(self, per_window: int = 20, window: float = 60.0, max_sources: int = 10_000) -> None:
        self.per_window = per_window
        self.window = window
        self.max_sources = max_sources
        #: source -> [window start, recorded in window, suppressed since the last recorded event]
        self._sources: OrderedDict[str, list[float]] = OrderedDict()

    def admit(self, source: str, now: float | None = None) -> int | None:
        """None: leave this event out; otherwise record it, noting this many left out before it."""
        t = time.monotonic() if now is None else now
        entry = self._sources.get(source)
        if entry is None:
            if len(self._sources) >= self.max_sources:
                self._sources.popitem(last=False)  # the least recently seen source
            entry = self._sources[source] = [t, 0.0, 0.0]
        else:
            self._sources.move_to_end(source)
        if t - entry[0] >= self.window:
            entry[0], entry[1] = t, 0.0
        if entry[1] >= self.per_window:
            entry[2] += 1
            return None
        entry[1] += 1
        suppressed, entry[2] = int(entry[2]), 0.0
        return suppressed
