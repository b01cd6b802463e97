"""``hoopgw replay``: the transcript builder (pure), its rendering, and a real session replayed by the CLI."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors

from hoopgw.audit import AuditWriter, SessionInfo
from hoopgw.audit._replay import MAX_PAUSE, Entry, pauses, play, transcript
from hoopgw.cli import _replay
from hoopgw.cli._replay import Painter, format_offset, json_text, render
from hoopgw.config import load_config

from ._support.gateway import Gateway
from ._support.procs import hoopgw, wait_until

START = 1_700_000_000.0


def session_row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "0123456789abcdef",
        "type": "postgres",
        "connection": "bankdb",
        "subject": "bot",
        "groups": ["ai-agents"],
        "client_addr": "127.0.0.1:5555",
        "auth": "token",
        "params": {"user": "bot", "database": "bank", "application_name": "agent hoop:prompt=p-42"},
        "status": "closed",
        "started_at": START,
        "ended_at": START + 9,
        "close_reason": "client_terminated",
        "statements": 2,
        "errors": 1,
        "masked": {"email": 3},
    }
    row.update(over)
    return row


def stmt(sql: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "execute",
        "sql": sql,
        "statement_name": "",
        "portal": "",
        "params": None,
        "tags": ["SELECT 1"],
        "rows": 1,
        "status": "ok",
        "error": None,
        "duration_ms": 0.5,
    }
    data.update(over)
    return data


def ev(seq: int, at: float, kind: str, data: dict[str, Any], prompt_id: str | None = None) -> dict[str, Any]:
    return {
        "seq": seq,
        "ts": START + at,
        "session_id": "s",
        "kind": kind,
        "data": data,
        "prompt_id": prompt_id,
    }


def sample_events() -> list[dict[str, Any]]:
    """In the store's order (seq), as ``AuditStore.session_events`` returns them."""
    denied = {"rule": "agents", "classes": ["ddl"], "reasons": [], "sql": "DROP TABLE t"}
    requested = {"request_id": "r1", "rule": "agents", "sql": "UPDATE t SET a = 1"}
    return [
        ev(1, 0.0, "session_open", {"type": "postgres"}),
        ev(2, 2.0, "policy_denied", denied),
        # written after the denial (a statement is written when it completes), but it started before
        ev(3, 1.5, "statement", stmt("SELECT 1"), prompt_id="p-7"),
        ev(4, 2.0, "approval_requested", requested),  # the same time as the denial: seq breaks the tie
        ev(5, 6.0, "approval_closed", {"request_id": "r1", "status": "expired", "reason": None}),
        ev(6, 9.0, "session_close", {"reason": "client_terminated", "masked": {"email": 3}}),
    ]


# -- the transcript builder ------------------------------------------------------------------------------
def test_transcript_header_order_offsets_and_close() -> None:
    entries = transcript(session_row(), sample_events())
    assert [e.kind for e in entries] == [
        "session_open",
        "statement",
        "policy_denied",
        "approval_requested",  # same time as the denial: the store's order (seq) breaks the tie
        "approval_closed",
        "session_close",
    ]
    assert [e.offset_ms for e in entries] == [0.0, 1500.0, 2000.0, 2000.0, 6000.0, 9000.0]
    header = entries[0].fields
    assert header["id"] == "0123456789abcdef" and header["subject"] == "bot"
    assert header["prompt_id"] == "p-42"  # from application_name
    assert entries[1].fields["prompt_id"] == "p-7" and entries[1].fields["sql"] == "SELECT 1"
    assert "prompt_id" not in entries[2].fields
    close = entries[-1].fields
    assert close["reason"] == "client_terminated" and close["masked"] == {"email": 3}
    assert (close["statements"], close["errors"]) == (2, 1)
    assert entries[1].as_json() == {"offset_ms": 1500.0, "kind": "statement", "fields": entries[1].fields}


def test_transcript_clamps_clock_steps_and_keeps_close_last() -> None:
    events = [
        ev(1, -3.0, "statement", stmt("SELECT early")),  # a clock step put it before the start
        ev(2, 5.0, "statement", stmt("SELECT late")),
        ev(3, 4.0, "session_close", {"reason": "idle_timeout"}),  # written before the late one's start
    ]
    entries = transcript(session_row(params={}), events)
    assert [(e.kind, e.offset_ms) for e in entries] == [
        ("session_open", 0.0),
        ("statement", 0.0),
        ("statement", 5000.0),
        ("session_close", 5000.0),
    ]
    assert entries[0].fields["prompt_id"] is None
    tagged = transcript(session_row(params={"prompt_id": "p-1", "application_name": "hoop:prompt=p-2"}), [])
    assert tagged[0].fields["prompt_id"] == "p-1"  # the gateway's own reading of the tag wins
    assert entries[-1].fields["masked"] == {}


def test_transcript_of_an_open_session_has_no_close() -> None:
    entries = transcript(session_row(status="open", ended_at=None), sample_events()[:3])
    assert entries[-1].kind == "policy_denied"


def test_pauses_scale_by_speed_and_are_capped() -> None:
    entries = transcript(session_row(), sample_events())  # offsets 0, 1.5, 2, 2, 6, 9 s
    assert pauses(entries, 1.0) == [0.0, 1.5, 0.5, 0.0, MAX_PAUSE, MAX_PAUSE]
    assert pauses(entries, 2.0) == [0.0, 0.75, 0.25, 0.0, 2.0, 1.5]
    assert pauses(entries, 0.5) == [0.0, MAX_PAUSE, 1.0, 0.0, MAX_PAUSE, MAX_PAUSE]
    assert pauses(entries, 4.0, max_pause=0.5) == [0.0, 0.375, 0.125, 0.0, 0.5, 0.5]
    assert pauses(entries, 0.0) == [0.0] * 6
    assert pauses([], 1.0) == []
    with pytest.raises(ValueError, match="negative"):
        pauses(entries, -1.0)
    # out-of-order offsets (never built by transcript, but play must not sleep negative time)
    odd = [Entry(0.0, "a", {}), Entry(3000.0, "b", {}), Entry(1000.0, "c", {}), Entry(3500.0, "d", {})]
    assert pauses(odd, 1.0) == [0.0, 2.0, 0.0, 0.5]


def test_play_sleeps_before_each_entry_then_shows_it() -> None:
    entries = transcript(session_row(), sample_events())
    log: list[tuple[str, Any]] = []
    play(entries, lambda e: log.append(("show", e.kind)), speed=2.0, sleep=lambda s: log.append(("sleep", s)))
    assert log == [
        ("show", "session_open"),
        ("sleep", 0.75),
        ("show", "statement"),
        ("sleep", 0.25),
        ("show", "policy_denied"),
        ("show", "approval_requested"),  # no sleep(0)
        ("sleep", 2.0),
        ("show", "approval_closed"),
        ("sleep", 1.5),
        ("show", "session_close"),
    ]
    slept: list[float] = []
    play(entries, lambda e: None, speed=0.0, sleep=slept.append)
    assert slept == []


# -- rendering -------------------------------------------------------------------------------------------
PLAIN = Painter(enabled=False)
NASTY = "SELECT 'ok' \x1b[2K\r-- DELETE\u202e \x9b31m"


def test_render_statement_error_and_refusal() -> None:
    ok = Entry(1234.6, "statement", stmt("SELECT $1,\n  $2", params=["7", None], tags=["SELECT 1"]))
    assert render(ok, PLAIN) == [
        "+0:01.235  ok     SELECT 1 (1 row)  0.500 ms",
        "           SELECT $1,",
        "             $2",
        "           params: $1='7', $2=NULL",
    ]
    err = stmt("SELECT * FROM nope", status="error", rows=0, tags=[])
    err["error"] = {"sqlstate": "42P01", "message": 'relation "nope" does not exist'}
    assert render(Entry(3_723_004.0, "statement", err), PLAIN)[0] == (
        '+1:02:03.004 error  42P01 relation "nope" does not exist  0.500 ms'
    )
    denied = {"rule": "agents", "classes": ["ddl"], "reasons": ["no DDL"], "sql": "DROP TABLE t"}
    assert render(Entry(0.0, "policy_denied", denied), PLAIN) == [
        '+0:00.000  denied policy "agents"  classes ddl',
        "           reason: no DDL",
        "           DROP TABLE t",
    ]
    closed = {"request_id": "r1", "status": "rejected", "reason": "not now"}
    assert render(Entry(0.0, "approval_closed", closed), PLAIN) == [
        "+0:00.000  approval closed  request r1  rejected  reason not now"
    ]
    void = {"request_id": "r2", "reason": "the client disconnected"}
    assert render(Entry(0.0, "approval_void", void), PLAIN) == [
        "+0:00.000  approval void  request r2  reason the client disconnected"
    ]
    later = render(Entry(0.0, "statement", stmt("SELECT 1", preview="[['a***']]")), PLAIN)
    assert later[-1] == "           preview: [['a***']]"  # a field the renderer does not know is still shown
    other = render(Entry(0.0, "guard_tripped", {"parameter": "role"}), PLAIN)
    assert other == ["+0:00.000  guard_tripped  parameter=role"]


def test_render_header_and_close() -> None:
    entries = transcript(session_row(), sample_events())
    header = render(entries[0], PLAIN)
    assert header[0] == "replay    0123456789abcdef  postgres session on bankdb  closed (client_terminated)"
    assert header[1] == "who       bot  groups ai-agents  auth token"
    assert (
        header[2] == "from      127.0.0.1:5555  user bot  database bank  application agent hoop:prompt=p-42"
    )
    assert header[3] == "when      2023-11-14 22:13:20 UTC  ended 2023-11-14 22:13:29  duration 9.0 s"
    assert header[4] == "prompt    p-42"
    assert render(entries[-1], PLAIN) == [
        "+0:09.000  session closed  client_terminated",
        "",
        "masked    email=3",
        "totals    2 statements  1 error",
    ]


def test_render_escapes_control_characters_in_recorded_text() -> None:
    bad = stmt(NASTY, params=["\x1b]0;title\x07"], tags=["SELECT 1\x1b[1A"])
    bad["status"], bad["error"] = "error", {"sqlstate": "XX000", "message": "boom\x1b[31m\rok"}
    entries = [
        transcript(
            session_row(subject="eve\x1b[8m", params={"application_name": "psql\u202e", "user": "u\r"}), []
        )[0],
        Entry(1.0, "statement", bad),
        Entry(2.0, "policy_denied", {"rule": "r\x1b", "reasons": ["\x1b[2J"], "sql": NASTY}),
        Entry(3.0, "approval_requested", {"request_id": "r\x07", "sql": NASTY, "params": ["\x9b"]}),
        Entry(4.0, "session_close", {"reason": "\x1b[2J", "masked": {"e\x1b": 1}}),
        Entry(5.0, "whatever", {"k\x1b": "v\r\n"}),
    ]
    for paint in (PLAIN, Painter(enabled=True)):
        text = "\n".join(line for e in entries for line in render(e, paint))
        ours = re.sub(r"\x1b\[[0-9;]*m", "", text) if paint.enabled else text
        assert "\x1b" not in ours and "\r" not in ours and "\x07" not in ours
        assert "\u202e" not in text and "\x9b" not in text
        assert "\\x1b[2K\\x0d-- DELETE\\u202e \\x9b31m" in text
        assert "eve\\x1b[8m" in text and "boom\\x1b[31m\\x0dok" in text and "psql\\u202e" in text
    assert "\x1b[" in "".join(render(entries[1], Painter(enabled=True)))  # colour when asked for


def test_json_text_escapes_c1_and_format_characters_losslessly() -> None:
    value = [{"sql": "a\x1b[2Jb\x9b\u202e\u2028\U000e0041", "n": 1}]
    text = json_text(value)
    assert json.loads(text) == value
    assert all(ch.isascii() and (ch.isprintable() or ch in "\n") for ch in text), text
    assert "\\u009b" in text and "\\u202e" in text and "\\udb40\\udc41" in text


def test_format_offset() -> None:
    assert format_offset(0) == "+0:00.000"
    assert format_offset(59_999.6) == "+1:00.000"
    assert format_offset(61_001) == "+1:01.001"
    assert format_offset(36_000_000) == "+10:00:00.000"


# -- the command, on a store written by AuditWriter --------------------------------------------------------
CONFIG = """
[gateway]
data_dir = "var"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:15432"
upstream = "postgresql://app@127.0.0.1:5432/bank"
password = "env:HOOPGW_TEST_PW"
"""


class _Stmt:
    kind, sql, statement_name, portal, params = "query", "SELECT 1", None, None, None
    tags, rows, status, error = ["SELECT 1"], 1, "ok", None

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.ended_ns = self.started_ns + 2_000_000


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A config whose store holds a closed postgres session, an open one and an ssh one."""
    config_file = tmp_path / "gw.toml"
    config_file.write_text(CONFIG)
    writer = AuditWriter(load_config(config_file, allow_unsupported=True).gateway.data_dir, 0.05)
    # ids chosen for the prefix tests: "aa" names one session, "bbb" two
    ids = {"closed": "aaaa000000000001", "open": "bbbb000000000002", "ssh": "bbbc000000000003"}
    for name, kind in (("closed", "postgres"), ("open", "postgres"), ("ssh", "ssh")):
        sid = ids[name]
        writer.session_open(SessionInfo(sid, kind, "bankdb", "alice", ["dev"], "127.0.0.1:1", "token", {}))
    writer.statement(ids["closed"], _Stmt())
    writer.session_close(ids["closed"], "client_terminated", {"email": 2})
    writer.statement(ids["open"], _Stmt())
    writer.close()
    return config_file, ids


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hoopgw")
    _replay.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["replay", *argv])


def _no_sleep(seconds: float) -> None:
    pytest.fail(f"--no-wait slept {seconds} s")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_tty_without_no_color(
    recorded: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file, ids = recorded
    args = parse(ids["closed"], "-c", str(config_file), "--no-wait")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for stream, env, coloured in ((_Tty(), None, True), (_Tty(), "1", False), (io.StringIO(), None, False)):
        if env is not None:
            monkeypatch.setenv("NO_COLOR", env)
        monkeypatch.setattr("sys.stdout", stream)
        assert _replay.run_replay(args, sleep=_no_sleep) == 0
        assert ("\x1b[" in stream.getvalue()) is coloured, stream.getvalue()
        plain = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
        assert "SELECT 1 (1 row)" in plain and "masked    email=2" in plain


def test_cli_prefix_open_session_missing_and_unsupported(recorded: tuple[Path, dict[str, str]]) -> None:
    config_file, ids = recorded
    shown = hoopgw("replay", "aa", "--no-wait", "-c", config_file)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"replay    {ids['closed']}  postgres session on bankdb")
    assert re.match(r"\+0:00\.\d{3}  ok     SELECT 1 \(1 row\)  2\.000 ms$", lines[5]), lines
    assert lines[-3:] == ["", "masked    email=2", "totals    1 statement  0 errors"]
    still_open = hoopgw("replay", ids["open"], "--speed", "0", "-c", config_file)
    assert still_open.returncode == 0, still_open.stderr
    assert (
        still_open.stdout.splitlines()[-1] == "(the session is still open: this is what was recorded so far)"
    )
    as_json = hoopgw("replay", ids["closed"], "--json", "-c", config_file)
    assert [e["kind"] for e in json.loads(as_json.stdout)] == ["session_open", "statement", "session_close"]

    ssh = hoopgw("replay", ids["ssh"], "-c", config_file)  # an ssh session without a terminal channel
    assert ssh.returncode == 0, ssh.stderr
    assert "no terminal was recorded in this session" in ssh.stdout
    missing = hoopgw("replay", "zzzz", "-c", config_file)
    assert missing.returncode == 1 and missing.stderr == "hoopgw: no session 'zzzz'\n"
    ambiguous = hoopgw("replay", "bbb", "-c", config_file)
    assert ambiguous.returncode == 1 and ambiguous.stderr == "hoopgw: session id prefix 'bbb' is ambiguous\n"
    bad_speed = hoopgw("replay", ids["closed"], "--speed", "-1", "-c", config_file)
    assert bad_speed.returncode == 2 and "must be 0 or more" in bad_speed.stderr
    nothing = hoopgw("replay", "abc", "-c", config_file.parent / "none.toml")
    assert nothing.returncode == 1


# -- a real session through the real gateway ---------------------------------------------------------------
AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "deny": ["ddl"],
    "approvers": ["group:dba"],
    "approval_timeout": "1s",  # nobody decides: the held write expires after a real second
}


@pytest.fixture(scope="module")
def session(module_gateway_factory: Any) -> tuple[Gateway, str]:
    """A gateway and the id of a finished session: a read, an error, a denial, a held write, an escape."""
    gw: Gateway = module_gateway_factory(extra={"policy": [AGENTS]})
    info = gw.conninfo(user="bot", groups=("ai-agents",), application_name="agent hoop:prompt=p-replay")
    with psycopg.connect(info, autocommit=True) as conn:
        assert conn.execute("SELECT %s || '!' AS shout", ("hi",)).fetchone() == ("hi!",)
        with pytest.raises(pgerrors.UndefinedTable):
            conn.execute("SELECT * FROM replay_no_such_table")
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("CREATE TABLE replay_denied (id int)")
        with pytest.raises(pgerrors.InsufficientPrivilege, match="expired"):
            conn.execute("UPDATE replay_held SET a = 1 WHERE id = 2")
        assert conn.execute("SELECT 'x\x1b[2J' AS nasty").fetchone() == ("x\x1b[2J",)
    db = gw.data_dir / "audit.db"

    def closed() -> bool:
        with sqlite3.connect(db) as c:
            row = c.execute("SELECT count(*) FROM sessions WHERE status = 'closed'").fetchone()
            return bool(row == (1,))

    wait_until(closed, timeout=15, what="the session's close record")
    with sqlite3.connect(db) as c:
        [(sid,)] = c.execute("SELECT id FROM sessions").fetchall()
    return gw, sid


def test_replay_real_session_text(session: tuple[Gateway, str]) -> None:
    gw, sid = session
    res = gw.run_cli("replay", sid[:12], "--no-wait")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith(f"replay    {sid}  postgres session on bankdb  closed")
    assert "who       bot  groups ai-agents  auth token" in out and "prompt    p-replay" in out
    # each step once, in the order it happened, with its outcome
    marks = [
        "ok     SELECT 1 (1 row)",
        "SELECT $1 || '!' AS shout",
        "params: $1='hi'",
        'error  42P01 relation "replay_no_such_table" does not exist',
        'denied policy "agents"  classes ddl',
        "CREATE TABLE replay_denied (id int)",
        "approval requested  request ",
        'policy "agents"  classes write  expires 20',
        "UPDATE replay_held SET a = 1 WHERE id = 2",
        "approval closed  request ",
        "expired  reason expired",
        "SELECT 'x\\x1b[2J' AS nasty",  # the escape character shown, not obeyed
        "session closed  ",
        "totals    ",
    ]
    positions = [out.find(m) for m in marks]
    assert -1 not in positions, dict(zip(marks, positions, strict=True))
    assert positions == sorted(positions), dict(zip(marks, positions, strict=True))
    assert "\x1b" not in out  # not a TTY: no colour; recorded text escaped


def test_replay_real_session_json_and_timing(
    session: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, sid = session
    res = gw.run_cli("replay", sid, "--json")
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)
    assert [set(e) for e in entries] == [{"offset_ms", "kind", "fields"}] * len(entries)
    offsets = [e["offset_ms"] for e in entries]
    assert offsets == sorted(offsets) and offsets[0] == 0
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "session_open" and kinds[-1] == "session_close"
    assert kinds.index("policy_denied") < kinds.index("approval_requested") < kinds.index("approval_closed")
    stmts = [e["fields"] for e in entries if e["kind"] == "statement"]
    first, error = stmts[0], next(s for s in stmts if s["status"] == "error")
    assert (first["sql"], first["params"], first["rows"]) == ("SELECT $1 || '!' AS shout", ["hi"], 1)
    assert error["error"]["sqlstate"] == "42P01" and error["sql"] == "SELECT * FROM replay_no_such_table"
    assert stmts[-1]["sql"] == "SELECT 'x\x1b[2J' AS nasty"  # JSON keeps the recorded text
    requested = next(e for e in entries if e["kind"] == "approval_requested")
    closed = next(e for e in entries if e["kind"] == "approval_closed")
    assert closed["fields"]["request_id"] == requested["fields"]["request_id"]
    assert closed["fields"]["status"] == "expired"
    assert closed["offset_ms"] - requested["offset_ms"] >= 900  # the held write waited its second

    # --speed in process with a fake sleep: the exact pauses come from the recorded offsets
    gaps = [max(0.0, b - a) / 1000 for a, b in itertools.pairwise(offsets)]
    slept: list[float] = []
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert (
        _replay.run_replay(parse(sid, "-c", str(gw.config_path), "--speed", "0.25"), sleep=slept.append) == 0
    )
    assert slept == pytest.approx([min(g / 0.25, MAX_PAUSE) for g in gaps if g > 0])
    assert MAX_PAUSE in slept  # the one-second hold, four times slower, is cut to the cap

    # and for real, through the CLI: at least the scaled pauses (no upper bound that could flake)
    expected = sum(min(g / 2, MAX_PAUSE) for g in gaps)
    began = time.monotonic()
    timed = gw.run_cli("replay", sid, "--speed", "2")
    elapsed = time.monotonic() - began
    assert timed.returncode == 0, timed.stderr
    assert timed.stdout == gw.run_cli("replay", sid, "--no-wait").stdout
    assert expected >= 0.45 and elapsed >= expected * 0.95, (expected, elapsed)
    assert elapsed < expected + 30
