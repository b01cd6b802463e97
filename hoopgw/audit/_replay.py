"""Replay: a recorded session as a timed transcript, or an SSH channel's terminal as an asciicast
(pure functions; ``hoopgw replay`` and ``hoopgw sessions show --asciicast`` render them).

A transcript is a list of :class:`Entry`: the session header first (offset 0), then every recorded
event of the session in time order — a statement at the time it started, any other event at the time
it was recorded; equal times keep the store's order — and the ``session_close`` entry last when the
session has ended. Each entry's ``fields`` are the event's data as recorded (statements, parameters
and refused SQL are masked before they are stored; a statement's ``preview`` holds the first rows of its
result as the client got them, masked), plus its ``prompt_id`` when the event has one.

An SSH session's channels with a terminal are recorded as ``terminal_start``, ``terminal`` (chunks of
asciicast v2 frames, masked), ``terminal_truncated`` and ``terminal_end`` events
(``hoopgw.proxy.ssh._record``); :func:`cast` puts one channel's chunks back together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from hoopgw.audit._prompt import session_prompt

#: Session types that can be replayed as a SQL transcript.
REPLAYABLE_TYPES = frozenset({"postgres"})
#: Session types whose channels are recorded as terminals (asciicast v2).
TERMINAL_TYPES = frozenset({"ssh"})
#: The events of a terminal recording that hold frames (left out of a summary).
FRAME_KINDS = frozenset({"terminal"})
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


# -- terminals (SSH) ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cast:
    """One channel's terminal recording, put back together from its events."""

    channel: int
    #: the ``terminal_start`` data: ``width``, ``height``, ``term``, ``command``, ``timestamp``
    start: dict[str, Any]
    #: ``[t, code, text]`` in time order: ``t`` seconds since the start, ``code`` "o", "i" or "r"
    frames: list[list[Any]]
    #: the ``terminal_end`` data (None while the channel is open)
    end: dict[str, Any] | None
    #: the ``terminal_truncated`` data, when the recording reached its cap
    truncated: dict[str, Any] | None
    #: chunks missing from the store (dropped when the audit queue overflowed, or purged)
    missing: int


def terminal_channels(events: Iterable[dict[str, Any]]) -> list[int]:
    """The channels that have a ``terminal_start``, in the order they started."""
    out: list[int] = []
    for event in events:
        data = event.get("data")
        if event["kind"] == "terminal_start" and isinstance(data, dict):
            channel = data.get("channel")
            if type(channel) is int and channel not in out:
                out.append(channel)
    return out


def cast(events: Iterable[dict[str, Any]], channel: int) -> Cast:
    """The terminal recording of ``channel`` (LookupError if it has none).

    Chunks are taken in their ``seq`` order; frames that are not ``[number, str, str]`` are left out,
    and times never go back (a frame dated before the one before it is shown with it).
    """
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    truncated: dict[str, Any] | None = None
    chunks: dict[int, list[Any]] = {}
    for event in events:
        data = event.get("data")
        if not isinstance(data, dict) or data.get("channel") != channel:
            continue
        kind = event["kind"]
        if kind == "terminal_start" and start is None:
            start = data
        elif kind == "terminal" and type(data.get("seq")) is int and isinstance(data.get("frames"), list):
            chunks.setdefault(data["seq"], data["frames"])
        elif kind == "terminal_truncated":
            truncated = data
        elif kind == "terminal_end":
            end = data
    if start is None:
        raise LookupError(f"channel {channel} has no terminal recording")
    frames: list[list[Any]] = []
    last = 0.0
    for seq in sorted(chunks):
        for frame in chunks[seq]:
            if _is_frame(frame):
                last = max(last, float(frame[0]))
                frames.append([last, frame[1], frame[2]])
    missing = (max(chunks) - len(chunks)) if chunks else 0
    return Cast(channel, start, frames, end, truncated, missing)


def _is_frame(frame: object) -> bool:
    return (
        isinstance(frame, list)
        and len(frame) == 3
        and type(frame[0]) in (int, float)
        and isinstance(frame[1], str)
        and isinstance(frame[2], str)
    )


def asciicast_lines(session: dict[str, Any], recording: Cast) -> Iterator[str]:
    """The asciicast v2 file of ``recording``: the header line, then one JSON line per frame."""
    start = recording.start
    command = start.get("command")
    what = "shell" if command is None else f"exec {command}"
    header: dict[str, Any] = {
        "version": 2,
        "width": _size(start.get("width"), 80),
        "height": _size(start.get("height"), 24),
    }
    stamp = start.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        header["timestamp"] = int(stamp)
    header["env"] = {"TERM": start["term"]} if isinstance(start.get("term"), str) else {}
    header["title"] = (
        f"hoopgw session {session['id']} channel {recording.channel}: {session.get('subject')}"
        f"@{session.get('connection')} {what}"
    )[:500]
    yield orjson.dumps(header).decode()
    for t, code, text in recording.frames:
        yield orjson.dumps([round(t, 3), code, text]).decode()


def _size(value: object, default: int) -> int:
    return value if type(value) is int and value > 0 else default


def play_frames(
    frames: Sequence[list[Any]],
    write: Callable[[str], None],
    *,
    speed: float,
    sleep: Callable[[float], None],
    max_pause: float = MAX_PAUSE,
) -> None:
    """Write the output (``"o"``) frames, sleeping before each for the gap since the one before,
    divided by ``speed`` and at most ``max_pause`` (no sleep at all when ``speed`` is 0)."""
    if speed < 0:
        raise ValueError("speed must not be negative")
    previous = 0.0
    for t, code, text in frames:
        if code != "o":
            continue
        gap = max(0.0, float(t) - previous)
        previous = max(previous, float(t))
        pause = 0.0 if speed == 0 else min(gap / speed, max_pause)
        if pause > 0:
            sleep(pause)
        write(text)
