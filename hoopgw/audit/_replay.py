"""Replay: a recorded session as a timed transcript (pure functions; ``hoopgw replay`` renders it).

A transcript is a list of :class:`Entry`: the session header first (offset 0), then every recorded
event of the session in time order — a statement at the time it started, any other event at the time
it was recorded; equal times keep the store's order — and the ``session_close`` entry last when the
session has ended. Each entry's ``fields`` are the event's data as recorded (statements, parameters
and refused SQL are masked before they are stored; a statement's ``preview`` holds the first rows of its
result as the client got them, masked), plus its ``prompt_id`` when the event has one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hoopgw.audit._prompt import session_prompt

#: Session types that can be replayed as a SQL transcript.
REPLAYABLE_TYPES = frozenset({"postgres"})
#: The longest single pause of a replay, in seconds (after scaling by the speed).
MAX_PAUSE = 2.0

_HEADER_KEYS = (
    "id",
    "type",
    "connection",
    "subject",
    "groups",
    "client_addr",
    "auth",
    "params",
    "status",
    "started_at",
    "ended_at",
    "close_reason",
    "statements",
    "errors",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a transcript: what happened ``offset_ms`` after the session opened."""

    offset_ms: float
    kind: str
    fields: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """``{"offset_ms": ..., "kind": ..., "fields": {...}}``."""
        return {"offset_ms": self.offset_ms, "kind": self.kind, "fields": self.fields}


def transcript(session: dict[str, Any], events: Iterable[dict[str, Any]]) -> list[Entry]:
    """The transcript of ``session`` (a row of ``AuditStore.get_session``) from its events.

    ``events`` are ``AuditStore.session_events`` dicts (``seq``, ``ts``, ``kind``, ``data``, optional
    ``prompt_id``). The header takes its fields from the session row; the ``session_open`` event adds
    nothing and is left out. Offsets never go below 0 (a clock step can put an event before the start).
    """
    start = float(session["started_at"])
    header = {key: session.get(key) for key in _HEADER_KEYS}
    params = session.get("params") or {}
    header["prompt_id"] = params.get("prompt_id") or session_prompt(params.get("application_name"))
    header["masked"] = dict(session.get("masked") or {})
    body: list[tuple[float, int, Entry]] = []
    close: Entry | None = None
    for position, event in enumerate(events):
        kind = str(event["kind"])
        if kind == "session_open":
            continue
        offset = _offset(float(event["ts"]), start)
        fields = dict(event["data"]) if isinstance(event.get("data"), dict) else {"data": event.get("data")}
        if event.get("prompt_id") is not None:
            fields["prompt_id"] = event["prompt_id"]
        if kind == "session_close":
            fields.setdefault("masked", {})
            fields["statements"] = session.get("statements")
            fields["errors"] = session.get("errors")
            close = Entry(offset, kind, fields)
            continue
        body.append((offset, position, Entry(offset, kind, fields)))
    body.sort(key=lambda item: (item[0], item[1]))
    out = [Entry(0.0, "session_open", header)]
    out.extend(entry for _, _, entry in body)
    if close is not None:
        last = out[-1].offset_ms
        out.append(Entry(max(close.offset_ms, last), close.kind, close.fields))
    return out


def _offset(ts: float, start: float) -> float:
    return round(max(0.0, (ts - start) * 1000.0), 3)


def pauses(entries: Sequence[Entry], speed: float, max_pause: float = MAX_PAUSE) -> list[float]:
    """Seconds to wait before each entry: the gap to the previous one divided by ``speed``, at most
    ``max_pause``; all zero when ``speed`` is 0 (print at once)."""
    if speed < 0:
        raise ValueError("speed must not be negative")
    out: list[float] = []
    previous = entries[0].offset_ms if entries else 0.0
    for entry in entries:
        gap = max(0.0, entry.offset_ms - previous) / 1000.0
        previous = max(previous, entry.offset_ms)
        out.append(0.0 if speed == 0 else min(gap / speed, max_pause))
    return out


def play(
    entries: Sequence[Entry],
    show: Callable[[Entry], None],
    *,
    speed: float,
    sleep: Callable[[float], None],
    max_pause: float = MAX_PAUSE,
) -> None:
    """Show every entry, sleeping before each for its (scaled, capped) pause; no sleep of 0."""
    for entry, pause in zip(entries, pauses(entries, speed, max_pause), strict=True):
        if pause > 0:
            sleep(pause)
        show(entry)
