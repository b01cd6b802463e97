"""``hoopgw replay SESSION``: a recorded session played back (offline, from data_dir).

A PostgreSQL session is shown as a timed transcript; an SSH session's terminal is played in the
terminal with its timing (``--summary`` lists its events instead: commands typed, requests, file
operations, forwards).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import orjson

from hoopgw.audit import AuditStore
from hoopgw.audit._db import Store
from hoopgw.audit._replay import (
    FRAME_KINDS,
    MAX_PAUSE,
    REPLAYABLE_TYPES,
    TERMINAL_TYPES,
    Cast,
    Entry,
    cast,
    play,
    play_frames,
    terminal_channels,
    transcript,
)
from hoopgw.cli._common import CliError, Subparsers, format_seconds, format_time, load, new_parser, printable

_INDENT = " " * 11  # under the text that follows the "+M:SS.mmm" offset column
#: The fields of a statement record the renderer shows in its own way; any other is listed as is.
_STATEMENT_KEYS = frozenset(
    {"kind", "sql", "statement_name", "portal", "params", "tags", "rows", "status", "error", "duration_ms",
     "prompt_id", "preview"}
)  # fmt: skip


def register(subparsers: Subparsers) -> None:
    """Add ``replay``."""
    parser = new_parser(
        subparsers,
        "replay",
        "replay a recorded session as a timed transcript",
        epilog="Events are shown at their recorded times, scaled by --speed; no single pause is longer "
        f"than --max-wait (default {MAX_PAUSE:g} s). PostgreSQL sessions are shown as a transcript; an SSH "
        "session's terminal is played as it was recorded (masked), or listed with --summary.",
    )
    parser.add_argument("id", metavar="SESSION", help="session id (a unique prefix is enough)")
    parser.add_argument(
        "--speed",
        type=_non_negative,
        default=1.0,
        metavar="X",
        help="playback speed: 2 is twice as fast, 0.5 half; 0 prints everything at once (default 1)",
    )
    parser.add_argument("--no-wait", action="store_true", help="print everything at once (like --speed 0)")
    parser.add_argument(
        "--max-wait",
        type=_non_negative,
        default=MAX_PAUSE,
        metavar="SECONDS",
        help=f"the longest single pause, after scaling (default {MAX_PAUSE:g})",
    )
    parser.add_argument(
        "--channel",
        type=channel_number,
        default=None,
        metavar="N",
        help="SSH: the channel whose terminal to play (default: the first one recorded)",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="SSH: list the session's events (commands typed, requests, files, forwards) instead of playing"
        " its terminal",
    )
    parser.add_argument("--json", action="store_true", help="print the transcript as one JSON array, at once")
    parser.set_defaults(func=run_replay)


def _non_negative(text: str) -> float:
    """argparse ``type=`` for ``--speed`` and ``--max-wait``: a number, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value) or value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def channel_number(text: str) -> int:
    """argparse ``type=`` for ``--channel``: an SSH channel number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a channel number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def run_replay(args: argparse.Namespace, *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Replay one session, timed unless ``--no-wait``, ``--speed 0``, ``--summary`` or ``--json``."""
    session, events = _load(args)
    terminal = session["type"] in TERMINAL_TYPES
    if session["type"] not in REPLAYABLE_TYPES and not terminal:
        raise CliError(f"replay of {session['type']} sessions is not supported yet", code=2)
    if args.channel is not None and not terminal:
        raise CliError("--channel applies to SSH sessions only", code=2)
    out = sys.stdout
    if args.json:
        out.write(json_text([e.as_json() for e in transcript(session, events)]) + "\n")
        return 0
    paint = Painter(enabled=out.isatty() and "NO_COLOR" not in os.environ)
    speed = 0.0 if args.no_wait else args.speed
    if terminal and not args.summary:
        return _play_terminal(session, events, args, paint, speed=speed, sleep=sleep)
    if terminal:  # the summary: every event but the frames
        events = [e for e in events if e["kind"] not in FRAME_KINDS]
        speed = 0.0
    entries = transcript(session, events)
    if terminal and entries[-1].kind == "session_close":
        for key in ("statements", "errors"):
            entries[-1].fields.pop(key, None)

    def show(entry: Entry) -> None:
        out.write("".join(line + "\n" for line in render(entry, paint)))
        out.flush()

    play(entries, show, speed=speed, sleep=sleep, max_pause=args.max_wait)
    if entries[-1].kind != "session_close":
        out.write(paint.dim("(the session is still open: this is what was recorded so far)") + "\n")
    return 0


def _play_terminal(
    session: dict[str, Any],
    events: list[dict[str, Any]],
    args: argparse.Namespace,
    paint: Painter,
    *,
    speed: float,
    sleep: Callable[[float], None],
) -> int:
    """Play one channel's recorded terminal: the header, the output as it was recorded, a footer."""
    out = sys.stdout
    channels = terminal_channels(events)
    header = _header(transcript(session, [])[0].fields, paint)[:-1]
    if not channels:
        out.write(
            "\n".join([*header, "", paint.dim("(no terminal was recorded in this session; see --summary)")])
        )
        out.write("\n")
        return 0
    channel = channels[0] if args.channel is None else args.channel
    if channel not in channels:
        recorded = ", ".join(map(str, channels))
        raise CliError(f"no terminal recorded on channel {channel} of this session (recorded: {recorded})")
    recording = cast(events, channel)
    header.append(f"{paint.bold('terminal')}  {_terminal_text(recording.start)}")
    if len(channels) > 1:
        others = ", ".join(str(c) for c in channels if c != channel)
        header.append(paint.dim(f"          also recorded: channel {others} (--channel N)"))
    out.write("\n".join([*header, ""]) + "\n")
    out.flush()
    play_frames(recording.frames, _raw_writer(out), speed=speed, sleep=sleep, max_pause=args.max_wait)
    reset = "\x1b[0m" if out.isatty() else ""
    out.write(reset + "\n" + "\n".join(_terminal_footer(recording, paint)) + "\n")
    if recording.end is None:
        out.write(paint.dim("(the channel is still open: this is what was recorded so far)") + "\n")
    return 0


def _raw_writer(out: Any) -> Callable[[str], None]:
    """Write recorded terminal output as it was (UTF-8, escape sequences and all), flushed."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a text-only stream (tests)

        def write_text(text: str) -> None:
            out.write(text)
            out.flush()

        return write_text
    out.flush()

    def write_bytes(text: str) -> None:
        buffer.write(text.encode("utf-8", "replace"))
        buffer.flush()

    return write_bytes


def _terminal_text(start: dict[str, Any]) -> str:
    """``channel 0  shell  80x24  xterm-256color`` (or ``exec COMMAND``), escaped."""
    command = start.get("command")
    what = "shell" if command is None else f"exec {_p(command)}"
    size = f"{_p(start.get('width'))}x{_p(start.get('height'))}"
    return f"channel {_p(start.get('channel'))}  {what}  {size}  {_p(start.get('term'))}"


def _terminal_footer(recording: Cast, paint: Painter) -> list[str]:
    end = recording.end
    if end is None:
        status = "still open"
    else:
        exit_status = end.get("exit_status")
        status = "exit status " + ("-" if exit_status is None else _p(exit_status))
    lines = [f"{paint.bold('end')}       channel {recording.channel}: {status}"]
    if recording.truncated is not None:
        dropped = f", {_p(end.get('dropped_bytes'))} bytes after it not recorded" if end else ""
        at = _p(recording.truncated.get("at_bytes"))
        lines.append(paint.warn(f"truncated at {at} bytes (the recording cap){dropped}"))
    if recording.missing:
        lines.append(paint.warn(f"{recording.missing} chunk(s) of the recording are missing from the store"))
    return lines


def _load(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The session named by ``args.id`` (an id or a unique prefix) and its events."""
    where = Store.for_config(load(args))
    if not where.exists():
        raise CliError(f"no session {args.id!r} (nothing recorded yet)")
    with AuditStore.open(where, create=False) as store:
        session = store.get_session(args.id)
        if session is None:
            matches = store.match_session_ids(args.id)
            if len(matches) > 1:
                raise CliError(f"session id prefix {args.id!r} is ambiguous")
            session = store.get_session(matches[0]) if matches else None
        if session is None:
            raise CliError(f"no session {args.id!r}")
        return session, store.session_events(session["id"])


# -- rendering --------------------------------------------------------------------------------------
class Painter:
    """ANSI colours (or none) for the labels the CLI writes and for values already escaped."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def _sgr(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._sgr("1", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", text)

    def ok(self, text: str) -> str:
        return self._sgr("32", text)

    def bad(self, text: str) -> str:
        return self._sgr("1;31", text)

    def warn(self, text: str) -> str:
        return self._sgr("33", text)


def format_offset(ms: float) -> str:
    """``+0:01.234`` (minutes:seconds.milliseconds), ``+1:02:03.004`` from an hour on."""
    total = round(ms)
    seconds, millis = divmod(total, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"+{hours}:{minutes:02d}:{seconds:02d}.{millis:03d}"
    return f"+{minutes}:{seconds:02d}.{millis:03d}"


def _p(value: object) -> str:
    """One line of recorded (untrusted) text, safe for the terminal."""
    return printable("-" if value is None or value == "" else value, newlines=False)


def _block(text: object) -> list[str]:
    """Multi-line recorded text (SQL), escaped and indented under the entry."""
    return [_INDENT + line for line in printable(text).split("\n")]


def _params(params: list[str | None]) -> str:
    return ", ".join(f"${i}={'NULL' if p is None else _p(repr(p))}" for i, p in enumerate(params, 1))


def _header(f: dict[str, Any], paint: Painter) -> list[str]:
    status = f["status"] or "-"
    if f.get("close_reason"):
        status += f" ({f['close_reason']})"
    params = f.get("params") or {}
    if f.get("type") in TERMINAL_TYPES:
        origin = f"user {_p(params.get('user'))}  upstream {_p(params.get('upstream'))}"
    else:
        origin = (
            f"user {_p(params.get('user'))}  database {_p(params.get('database'))}"
            f"  application {_p(params.get('application_name'))}"
        )
    lines = [
        f"{paint.bold('replay')}    {_p(f['id'])}  {_p(f['type'])} session on {_p(f['connection'])}"
        f"  {_p(status)}",
        f"{paint.bold('who')}       {_p(f['subject'])}  groups {_p(', '.join(f.get('groups') or []))}"
        f"  auth {_p(f.get('auth'))}",
        f"{paint.bold('from')}      {_p(f.get('client_addr'))}  {origin}",
    ]
    when = f"{format_time(f['started_at'])} UTC"
    if f.get("ended_at") is not None:
        seconds = float(f["ended_at"]) - float(f["started_at"])
        when += f"  ended {format_time(f['ended_at'])}  duration {format_seconds(seconds)}"
    lines.append(f"{paint.bold('when')}      {when}")
    if f.get("prompt_id"):
        lines.append(f"{paint.bold('prompt')}    {_p(f['prompt_id'])}")
    lines.append("")
    return lines


def _statement(f: dict[str, Any], paint: Painter) -> list[str]:
    status = str(f.get("status") or "-")
    duration = f"{float(f.get('duration_ms') or 0):.3f} ms"
    error = f.get("error")
    if error:
        label = paint.bad(f"{'error':<6}")
        summary = f"{_p(error.get('sqlstate'))} {_p(error.get('message'))}"
    else:
        label = (paint.ok if status == "ok" else paint.warn)(f"{_p(status):<6}")
        rows = int(f.get("rows") or 0)
        tags = ", ".join(_p(t) for t in f.get("tags") or [] if t)
        summary = f"{tags} ({rows} row{'s' * (rows != 1)})".strip()
        if status == "skipped":
            summary = "not run: an earlier message of the batch failed"
    lines = [f"{label} {summary}  {paint.dim(duration)}"]
    lines.extend(_block(f.get("sql", "")))
    if f.get("params"):
        lines.append(f"{_INDENT}params: {_params(f['params'])}")
    if f.get("prompt_id"):
        lines.append(f"{_INDENT}prompt: {_p(f['prompt_id'])}")
    lines.extend(_preview(f.get("preview"), f, paint))
    # whatever else a statement record carries (fields added later) is shown, not dropped
    lines.extend(f"{_INDENT}{_p(k)}: {_p(v)}" for k, v in f.items() if k not in _STATEMENT_KEYS and v)
    return lines


def _cell(value: object) -> str:
    """One recorded value for a table cell: escaped, on one line, tabs shown as ``\\t``."""
    return printable(value, newlines=False).replace("\t", "\\t")


def _width(text: str) -> int:
    """Terminal columns ``text`` takes (East Asian wide and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _preview(preview: object, f: dict[str, Any], paint: Painter) -> list[str]:
    """The recorded result preview as an aligned table (NULL shown as ``NULL``), or nothing."""
    if preview is None:
        return []
    if not isinstance(preview, dict):
        return [f"{_INDENT}preview: {_p(preview)}"]  # not what the gateway writes: shown as it is
    raw_columns, raw_rows = preview.get("columns"), preview.get("rows")
    columns: list[str | None] = [_cell(c) for c in raw_columns] if isinstance(raw_columns, list) else []
    rows: list[list[str | None]] = [
        [None if v is None else _cell(v) for v in row]
        for row in (raw_rows if isinstance(raw_rows, list) else [])
        if isinstance(row, list)
    ]
    if not columns and not rows:
        return []
    widths = [0] * max([len(columns), *(len(r) for r in rows)])
    for row in [columns, *rows]:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], _width("NULL" if v is None else v))

    def line(row: list[str | None]) -> str:
        cells = []
        for i, width in enumerate(widths):
            v = row[i] if i < len(row) else ""
            text = "NULL" if v is None else v
            pad = " " * (width - _width(text))
            cells.append((paint.dim(text) if v is None else text) + pad)
        return (_INDENT + " | ".join(cells)).rstrip()

    lines = []
    if columns:
        lines.append(line(columns))
        lines.append(_INDENT + "-+-".join("-" * w for w in widths))
    lines.extend(line(r) for r in rows)
    shown, total = len(rows), f.get("rows")
    if type(total) is int and total > shown and len(f.get("tags") or []) <= 1:
        more = total - shown
        lines.append(_INDENT + paint.dim(f"({more} more row{'s' * (more != 1)} not recorded)"))
    return lines


def _refused(label: str) -> Callable[[dict[str, Any], Painter], list[str]]:
    def render_refusal(f: dict[str, Any], paint: Painter) -> list[str]:
        rule = f'policy "{_p(f["rule"])}"' if f.get("rule") else "no policy allows it"
        classes = ", ".join(_p(c) for c in f.get("classes") or []) or "-"
        lines = [f"{paint.bad(label)} {rule}  classes {classes}"]
        lines.extend(f"{_INDENT}reason: {_p(r)}" for r in f.get("reasons") or [])
        lines.extend(_block(f.get("sql", "")))
        return lines

    return render_refusal


def _approval_requested(f: dict[str, Any], paint: Painter) -> list[str]:
    classes = ", ".join(_p(c) for c in f.get("classes") or []) or "-"
    lines = [
        f"{paint.warn('approval requested')}  request {_p(f.get('request_id'))}"
        f'  policy "{_p(f.get("rule"))}"  classes {classes}  expires {_expires(f.get("expires_at"))}'
    ]
    lines.extend(_block(f.get("sql", "")))
    if f.get("params"):
        lines.append(f"{_INDENT}params: {_params(f['params'])}")
    if f.get("prompt_id"):
        lines.append(f"{_INDENT}prompt: {_p(f['prompt_id'])}")
    return lines


def _expires(value: object) -> str:
    """An approval record's ``expires_at`` (integer milliseconds since the epoch) in UTC."""
    if type(value) is int:
        return f"{format_time(value / 1000)} UTC"
    return _p(value)


def _approval_closed(f: dict[str, Any], paint: Painter) -> list[str]:
    status = _p(f.get("status"))
    painted = paint.ok(status) if f.get("status") == "approved" else paint.bad(status)
    reason = f"  reason {_p(f['reason'])}" if f.get("reason") else ""
    return [f"{paint.warn('approval closed')}  request {_p(f.get('request_id'))}  {painted}{reason}"]


def _approval_void(f: dict[str, Any], paint: Painter) -> list[str]:
    return [f"{paint.warn('approval void')}  request {_p(f.get('request_id'))}  reason {_p(f.get('reason'))}"]


def _close(f: dict[str, Any], paint: Painter) -> list[str]:
    masked = f.get("masked") or {}
    counts = "  ".join(f"{_p(k)}={_p(v)}" for k, v in sorted(masked.items())) or "nothing"
    lines = [
        f"{paint.bold('session closed')}  {_p(f.get('reason'))}",
        "",
        f"{paint.bold('masked')}    {counts}",
    ]
    if f.get("statements") is not None:
        errors = int(f.get("errors") or 0)
        lines.append(
            f"{paint.bold('totals')}    {f['statements']} statement{'s' * (f['statements'] != 1)}"
            f"  {errors} error{'s' * (errors != 1)}"
        )
    return lines


def _other(kind: str) -> Callable[[dict[str, Any], Painter], list[str]]:
    def render_other(f: dict[str, Any], paint: Painter) -> list[str]:
        detail = "  ".join(f"{_p(k)}={_p(v)}" for k, v in f.items() if k != "sql")
        lines = [f"{paint.warn(_p(kind))}  {detail}".rstrip()]
        if f.get("sql"):
            lines.extend(_block(f["sql"]))
        return lines

    return render_other


def _command_line(f: dict[str, Any], paint: Painter) -> list[str]:
    note = paint.dim(f"(channel {_p(f.get('channel'))}, best effort)")
    return [f"{paint.bold('typed')}  {_p(f.get('line'))}  {note}"]


def _terminal_start(f: dict[str, Any], paint: Painter) -> list[str]:
    return [f"{paint.bold('terminal')}  {_terminal_text(f)}"]


def _terminal_truncated(f: dict[str, Any], paint: Painter) -> list[str]:
    at = _p(f.get("at_bytes"))
    return [f"{paint.warn('terminal truncated')}  channel {_p(f.get('channel'))}  at {at} bytes (the cap)"]


def _terminal_end(f: dict[str, Any], paint: Painter) -> list[str]:
    status = f.get("exit_status")
    line = (
        f"{paint.bold('terminal end')}  channel {_p(f.get('channel'))}  exit status"
        f" {'-' if status is None else _p(status)}  {_p(f.get('recorded_bytes'))} bytes recorded"
    )
    if f.get("dropped_bytes"):
        line += f", {_p(f['dropped_bytes'])} not"
    return [line]


_Renderer = Callable[[dict[str, Any], Painter], list[str]]
_RENDERERS: dict[str, _Renderer] = {
    "statement": _statement,
    "policy_denied": _refused("denied"),
    "approval_required": _refused("needs approval"),
    "approval_requested": _approval_requested,
    "approval_closed": _approval_closed,
    "approval_void": _approval_void,
    "session_close": _close,
    "command_line": _command_line,
    "terminal_start": _terminal_start,
    "terminal_truncated": _terminal_truncated,
    "terminal_end": _terminal_end,
}


def render(entry: Entry, paint: Painter) -> list[str]:
    """The terminal lines of one transcript entry (every recorded text escaped with ``printable``)."""
    if entry.kind == "session_open":
        return _header(entry.fields, paint)
    lines = _RENDERERS.get(entry.kind, _other(entry.kind))(entry.fields, paint)
    return [f"{paint.dim(f'{format_offset(entry.offset_ms):<10}')} {lines[0]}", *lines[1:]]


def json_text(value: Any) -> str:
    """``value`` as indented JSON whose non-ASCII control and format characters are ``\\u`` escapes.

    JSON already escapes C0 controls; C1 controls (e.g. U+009B, a one-byte CSI), bidi overrides and line
    separators would otherwise reach the terminal raw. The escapes decode to the same strings.
    """
    return escape_unsafe(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


_NON_ASCII = re.compile("[^\x00-\x7f]")


def escape_unsafe(text: str) -> str:
    """JSON ``text`` with its non-ASCII control and format characters as ``\\u`` escapes (the same
    strings once decoded); ASCII text is returned as it is, at once."""
    if text.isascii():
        return text
    return _NON_ASCII.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"):
        return ch
    code = ord(ch)
    if code >= 0x10000:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"
