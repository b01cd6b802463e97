"""A progress bar on the terminal for long exports: drawn only when the stream is a TTY."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 30
_EVERY = 0.1  # seconds between redraws


class Progress:
    """Counts done out of ``total`` and redraws one line (``\\r``) at most every 0.1 s.

    Not a TTY (a pipe, a log file, a test): nothing is written at all.
    """

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, *, enabled: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self._drawn = 0.0

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more done; redraw if it is time."""
        self.done += n
        if self.enabled and time.monotonic() - self._drawn >= _EVERY:
            self._draw()

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = round(_WIDTH * frac)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {frac:4.0%} {self.done:,}/{self.total:,}")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


#: Makes the progress bar of a phase: ``(label, total)``.
ProgressFactory = Callable[[str, int], Progress]
