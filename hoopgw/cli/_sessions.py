"""``hoopgw sessions list|show|hold|release``: recorded sessions, offline from data_dir's audit store.

``hold`` puts a session under legal hold (its events are never purged, docs/AUDIT.md) and
``release`` lifts it; both are recorded as events in the chain.

``show`` names the prompt behind each statement (its ``hoop:prompt`` tag) and whether the tag can be
trusted: ``known`` (the session's identity registered that prompt), ``FOREIGN`` (another identity did)
or ``UNKNOWN`` (no prompt has that id) — see docs/PROMPTS.md.

``show --asciicast`` prints an SSH channel's recorded terminal as an asciicast v2 file (docs/REPLAY.md).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from hoopgw.audit import AuditStore
from hoopgw.audit._db import Store
from hoopgw.audit._prompts import PromptStore, identity_ref, prompt_known
from hoopgw.audit._replay import FRAME_KINDS, TERMINAL_TYPES, asciicast_lines, cast, terminal_channels
from hoopgw.audit._retention import hold, release
from hoopgw.cli._common import (
    CliError,
    Subparsers,
    add_config_option,
    format_seconds,
    format_time,
    load,
    positive_int,
    print_json,
    printable,
)
from hoopgw.cli._replay import channel_number, escape_unsafe


def register(subparsers: Subparsers) -> None:
    """Add ``sessions list`` and ``sessions show``."""
    parser = subparsers.add_parser(
        "sessions", help="recorded sessions (offline, from data_dir)", description="recorded sessions"
    )
    add_config_option(parser)
    sub = parser.add_subparsers(dest="sessions_command", metavar="COMMAND", required=True)
    lst = sub.add_parser(
        "list", help="newest sessions first", description="List recorded sessions, newest first."
    )
    add_config_option(lst)
    lst.add_argument("--json", action="store_true", help="print one JSON array")
    lst.add_argument("--limit", "-n", type=positive_int, default=50, help="how many (default 50)")
    lst.set_defaults(func=run_list)
    show = sub.add_parser(
        "show", help="one session and its statements", description="Show one session and its statements."
    )
    add_config_option(show)
    show.add_argument("id", metavar="ID", help="session id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true", help="print one JSON array")
    show.add_argument(
        "--asciicast",
        action="store_true",
        help="SSH: print the channel's recorded terminal as an asciicast v2 file (asciinema play FILE)",
    )
    show.add_argument(
        "--channel",
        type=channel_number,
        default=None,
        metavar="N",
        help="with --asciicast: the channel (default: the first one with a terminal)",
    )
    show.set_defaults(func=run_show)
    held = sub.add_parser(
        "hold",
        help="put a session under legal hold: its events are never purged",
        description="Put a session under legal hold: retention never purges its events until it is"
        " released. Recorded in the audit chain (legal_hold_set).",
    )
    add_config_option(held)
    held.add_argument("id", metavar="ID", help="session id (a unique prefix is enough)")
    held.add_argument("--reason", required=True, help="why (a case or matter reference)")
    held.add_argument("--by", help="who sets it (default: the OS user)")
    held.add_argument("--json", action="store_true", help="print the hold as JSON")
    held.set_defaults(func=run_hold)
    free = sub.add_parser(
        "release",
        help="lift a session's legal hold",
        description="Lift a session's legal hold: retention applies to its events again. Recorded in"
        " the audit chain (legal_hold_released).",
    )
    add_config_option(free)
    free.add_argument("id", metavar="ID", help="session id (a unique prefix is enough)")
    free.add_argument("--by", help="who lifts it (default: the OS user)")
    free.add_argument("--json", action="store_true", help="print the released hold as JSON")
    free.set_defaults(func=run_release)


def _open(args: argparse.Namespace) -> AuditStore | None:
    store = Store.for_config(load(args))
    if not store.exists():
        return None
    return AuditStore.open(store, create=False)


def _duration(session: dict[str, Any]) -> float | None:
    if session["ended_at"] is None:
        return None
    return float(session["ended_at"] - session["started_at"])


def run_list(args: argparse.Namespace) -> int:
    """Print sessions as a table or JSON array."""
    store = _open(args)
    sessions: list[dict[str, Any]] = []
    if store is not None:
        with store:
            sessions = store.list_sessions(limit=args.limit)
    if args.json:
        print_json(sessions)
        return 0
    if not sessions:
        print("no sessions recorded")
        return 0
    rows = [
        (
            "ID",
            "STATUS",
            "TYPE",
            "CONNECTION",
            "SUBJECT",
            "CLIENT",
            "STARTED (UTC)",
            "DURATION",
            "STMTS",
            "ERRS",
            "HOLD",
        )
    ]
    for s in sessions:
        rows.append(
            (
                s["id"],
                s["status"],
                s["type"],
                s["connection"],
                s["subject"],
                s["client_addr"] or "-",
                format_time(s["started_at"]),
                format_seconds(_duration(s)) if s["status"] == "closed" else "open",
                str(s["statements"]),
                str(s["errors"]),
                "legal" if s.get("legal_hold") else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _find(store: AuditStore, given: str) -> dict[str, Any]:
    """The session ``given`` names (its id or a unique prefix of it); CliError if none."""
    session = store.get_session(given)
    if session is None:
        matches = store.match_session_ids(given)
        if len(matches) > 1:
            raise CliError(f"session id prefix {given!r} is ambiguous")
        session = store.get_session(matches[0]) if matches else None
    if session is None:
        raise CliError(f"no session {given!r}")
    return session


def run_show(args: argparse.Namespace) -> int:
    """Print one session and its events."""
    store = _open(args)
    if store is None:
        raise CliError(f"no session {args.id!r} (nothing recorded yet)")
    with store:
        session = _find(store, args.id)
        events = store.session_events(session["id"])
    if args.asciicast:
        return _print_asciicast(session, events, args.channel)
    if args.channel is not None:
        raise CliError("--channel goes with --asciicast", code=2)
    _judge_tags(store.store, session, events)
    if args.json:
        print_json([{**session, "events": events}])
        return 0
    print(printable("\n".join(_describe(session, events))))
    return 0


def _print_asciicast(session: dict[str, Any], events: list[dict[str, Any]], channel: int | None) -> int:
    """Write one channel's terminal recording to stdout as an asciicast v2 file."""
    if session["type"] not in TERMINAL_TYPES:
        raise CliError(f"{session['type']} sessions have no terminal recording", code=2)
    channels = terminal_channels(events)
    if not channels:
        raise CliError(f"no terminal was recorded in session {session['id']}")
    if channel is None:
        channel = channels[0]
    elif channel not in channels:
        recorded = ", ".join(map(str, channels))
        raise CliError(f"no terminal recorded on channel {channel} of this session (recorded: {recorded})")
    out = sys.stdout
    for line in asciicast_lines(session, cast(events, channel)):
        out.write(escape_unsafe(line) + "\n")  # JSON: a C1 control would reach a terminal raw
    return 0


def run_hold(args: argparse.Namespace) -> int:
    """Set a legal hold on one session."""
    store = _open(args)
    if store is None:
        raise CliError(f"no session {args.id!r} (nothing recorded yet)")
    with store:
        session_id = _find(store, args.id)["id"]
    out = hold(store.store, session_id, reason=args.reason, by=args.by or getpass.getuser())
    if args.json:
        print_json(out)
    else:
        print(printable(f"legal hold set on session {session_id} by {out['set_by']}: {out['reason']}"))
    return 0


def run_release(args: argparse.Namespace) -> int:
    """Lift the legal hold on one session."""
    store = _open(args)
    if store is None:
        raise CliError(f"no session {args.id!r} (nothing recorded yet)")
    with store:
        session_id = _find(store, args.id)["id"]
    out = release(store.store, session_id, by=args.by or getpass.getuser())
    if args.json:
        print_json(out)
    else:
        print(printable(f"legal hold on session {session_id} released by {out['released_by']}"))
    return 0


def _judge_tags(data_dir: Path | Store, session: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Add ``prompt_known`` to each event with a prompt tag (and to the session, for its own tag)."""
    tagged = [e for e in events if e.get("prompt_id")]
    own = session["params"].get("prompt_id")
    if not tagged and not own:
        return
    prompts = PromptStore(data_dir)
    try:
        owners = prompts.owners([*(e["prompt_id"] for e in tagged), *([own] if own else [])])
    finally:
        prompts.close()
    who = identity_ref(session["subject"], session["auth"])
    for e in tagged:
        e["prompt_known"] = prompt_known(owners.get(e["prompt_id"]), who)
    if own:
        session["prompt_known"] = prompt_known(owners.get(own), who)


def known_text(known: object) -> str:
    """How far a prompt tag can be trusted, for people."""
    if known is True:
        return "known (registered by this identity)"
    if known == "foreign":
        return "FOREIGN (registered by another identity)"
    return "UNKNOWN (no prompt is registered with this id)"


def _describe(s: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    status = s["status"] + (f" ({s['close_reason']})" if s["close_reason"] else "")
    out = [
        f"session     {s['id']}",
        f"type        {s['type']}    connection {s['connection']}    status {status}",
        f"subject     {s['subject']}    groups {', '.join(s['groups']) or '-'}    auth {s['auth'] or '-'}",
        f"client      {s['client_addr'] or '-'}",
        f"started     {format_time(s['started_at'])} UTC    ended {format_time(s['ended_at'])}"
        f"    duration {format_seconds(_duration(s))}",
        f"statements  {s['statements']}    errors {s['errors']}",
    ]
    if s["params"]:
        out.append("params      " + "  ".join(f"{k}={v}" for k, v in s["params"].items()))
    if s.get("masked"):
        out.append("masked      " + "  ".join(f"{k}={v}" for k, v in sorted(s["masked"].items())))
    if s.get("legal_hold"):
        h = s["legal_hold"]
        out.append(f"legal hold  set by {h['set_by']} at {format_time(h['set_at'])} UTC: {h['reason']}")
    if s["params"].get("prompt_id"):
        out.append(
            f"prompt      {s['params']['prompt_id']} (application_name): {known_text(s.get('prompt_known'))}"
        )
    out.append("")
    for e in events:
        lines = event_lines(e)
        if lines and e.get("prompt_id"):
            lines.append(f"    prompt: {e['prompt_id']}: {known_text(e.get('prompt_known'))}")
        out.extend(lines)
    return out


def event_lines(e: dict[str, Any]) -> list[str]:
    """An event as lines of text (none for session_open/session_close), the first one timed."""
    when = format_time(e["ts"])[11:] + f".{int(e['ts'] * 1000) % 1000:03d}"
    data = e["data"]
    if isinstance(data, dict) and list(data) == ["purged"]:  # a tombstone: a purge erased its data
        return [f"{when}  {e['kind']}  (data purged by purge {data['purged']})"]
    if e["kind"] != "statement":
        if e["kind"] in ("session_open", "session_close"):
            return []
        if e["kind"] in FRAME_KINDS and isinstance(data.get("frames"), list):  # a chunk of a terminal
            frames = data["frames"]
            chars = sum(
                len(f[2]) for f in frames if isinstance(f, list) and len(f) == 3 and isinstance(f[2], str)
            )
            return [
                f"{when}  {e['kind']}  channel={data.get('channel')}  seq={data.get('seq')}"
                f"  {len(frames)} frames, {chars} characters (--asciicast, or hoopgw replay)"
            ]
        detail = "  ".join(f"{k}={v}" for k, v in data.items())
        return [f"{when}  {e['kind']}  {detail}".rstrip()]
    summary = ", ".join(data["tags"]) if data["tags"] else ""
    summary += f" ({data['rows']} row{'s' * (data['rows'] != 1)})"
    if data.get("error"):
        summary = f"{data['error']['sqlstate']} {data['error']['message']}"
    lines = [f"{when}  {data['duration_ms']:>9.3f} ms  {data['status']:<9} {summary.strip()}"]
    lines.extend("    " + line for line in str(data["sql"]).splitlines() or [""])
    if data.get("params"):
        shown = ", ".join(f"${i}={'NULL' if p is None else repr(p)}" for i, p in enumerate(data["params"], 1))
        lines.append(f"    params: {shown}")
    return lines
