"""The SSH terminal recorder (masked asciicast chunks as audit events), its replay and its export."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoopgw import _core
from hoopgw.audit import AuditWriter, SessionInfo
from hoopgw.audit._replay import asciicast_lines, cast, play_frames, terminal_channels
from hoopgw.config import load_config
from hoopgw.masking import build_maskers, masking_key
from hoopgw.proxy.ssh._record import LINE_MAX, LineReader, TerminalRecorder

from ._support.procs import clean_env, hoopgw

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
MASKED_CARD = "**** **** **** 1111"
EMAIL = "carol.danvers@example.com"


class Sink:
    """Collects the recorder's events as ``(kind, payload, prompt_id)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str | None]] = []

    def event(
        self, session_id: str | None, kind: str, payload: dict[str, Any], prompt_id: str | None = None
    ) -> None:
        assert session_id == "s1"
        self.events.append((kind, json.loads(json.dumps(payload)), prompt_id))  # as the store keeps it

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [p for k, p, _ in self.events if k == kind]

    def frames(self) -> list[list[Any]]:
        return [f for chunk in self.of("terminal") for f in chunk["frames"]]

    def text(self, code: str = "o") -> str:
        return "".join(f[2] for f in self.frames() if f[1] == code)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def masker() -> _core.Masker:
    return _core.Masker([("credit_card", "last4"), ("email", "redact")])


def recorder(
    sink: Sink, masker: _core.Masker | None, clock: Clock | None = None, **over: Any
) -> TerminalRecorder:
    kwargs: dict[str, Any] = {
        "channel": 3,
        "width": 80,
        "height": 24,
        "term": "xterm-256color",
        "command": None,
        "masker": masker,
        "max_bytes": 1 << 20,
        "prompt_id": "p-9",
        "wall": lambda: 1_700_000_000.5,
    }
    if clock is not None:
        kwargs["clock"] = clock
    kwargs.update(over)
    return TerminalRecorder(sink, "s1", **kwargs)


# -- frames, chunks, start and end -------------------------------------------------------------------------
def test_start_frames_and_end(masker: _core.Masker) -> None:
    sink, clock = Sink(), Clock()
    rec = recorder(sink, masker, clock)
    assert sink.events == [
        (
            "terminal_start",
            {
                "channel": 3,
                "version": 2,
                "width": 80,
                "height": 24,
                "term": "xterm-256color",
                "command": None,
                "timestamp": 1_700_000_000.5,
            },
            "p-9",
        )
    ]
    clock.now += 0.25
    rec.output(b"$ ")
    clock.now += 0.5
    rec.input(b"l")
    clock.now += 0.0004  # the same millisecond: merged with the output that follows
    rec.output(b"hello\n")
    rec.output(b"world\n")
    clock.now += 1.0
    rec.resize(120, 40)
    clock.now += 0.002
    rec.close(7)
    assert rec.recorded_bytes == len(b"$ lhello\nworld\n")
    kinds = sink.kinds()
    assert kinds[0] == "terminal_start" and kinds[-1] == "terminal_end" and "terminal" in kinds
    assert all(p == "p-9" for _, _, p in sink.events)
    frames = sink.frames()
    # "$ " is held back (it could be the start of a value) until the line it starts is complete, then
    # dated when it was read; "l" is held until the close; times never go back
    assert [f[0] for f in frames] == sorted(f[0] for f in frames)
    assert [1.75, "r", "120x40"] in frames
    assert sink.text("o") == "$ hello\nworld\n"
    assert sink.text("i") == "l"
    assert [f for f in frames if f[1] == "o"] == [[0.25, "o", "$ "], [0.75, "o", "hello\nworld\n"]]
    assert sink.of("terminal_end") == [
        {"channel": 3, "exit_status": 7, "recorded_bytes": 15, "dropped_bytes": 0, "truncated": False}
    ]
    assert [c["seq"] for c in sink.of("terminal")] == list(range(1, len(sink.of("terminal")) + 1))
    n = len(sink.events)
    rec.close(1)
    rec.output(b"late")
    rec.tick()
    assert len(sink.events) == n  # closed: nothing more


def test_chunks_by_size_and_by_tick() -> None:
    sink, clock = Sink(), Clock()
    rec = recorder(sink, None, clock, chunk_bytes=100, chunk_interval=1.0)
    for _ in range(9):
        clock.now += 0.01
        rec.output(b"x" * 30)
    chunks = sink.of("terminal")
    assert [c["seq"] for c in chunks] == [1, 2]  # 120 bytes, then 120 more
    assert all(len(c["frames"]) == 4 for c in chunks)
    clock.now += 0.5
    rec.tick()  # not due: 0.5 s after the last chunk... and not 1 s
    assert len(sink.of("terminal")) == 2
    clock.now += 0.6
    rec.tick()
    assert [len(c["frames"]) for c in sink.of("terminal")] == [4, 4, 1]
    rec.tick()  # nothing new: no empty chunk
    assert len(sink.of("terminal")) == 3
    rec.close(0)
    assert len(sink.of("terminal")) == 3
    assert sink.text() == "x" * 270


def test_masking_never_stores_a_card_split_at_any_read_boundary(masker: _core.Masker) -> None:
    line = f"card {CARD} mail {EMAIL} card {CARD_DIGITS}\r\n".encode()
    for split in range(1, len(line)):
        for pause in (0.0, 5.0):
            sink, clock = Sink(), Clock()
            rec = recorder(sink, masker, clock)
            rec.output(line[:split])
            clock.now += pause
            rec.tick()  # a chunk may be due: what the stream holds back stays held
            rec.output(line[split:])
            rec.close(0)
            stored = json.dumps(sink.events)
            assert CARD not in stored and CARD_DIGITS not in stored and EMAIL not in stored, split
            assert sink.text() == masker.mask(line).decode(), split
            assert MASKED_CARD in sink.text()
    assert rec.mask_counts == {"credit_card": 2, "email": 1}


def test_held_back_prompt_keeps_the_time_it_was_read(masker: _core.Masker) -> None:
    sink, clock = Sink(), Clock()
    rec = recorder(sink, masker, chunk_interval=1.0, clock=clock)
    clock.now += 1.0
    rec.output(b"alice@host:~$ ")  # no line break: held back by the mask stream (it could start a value)
    for key in b"ls":
        clock.now += 0.2
        rec.input(bytes([key]))
        rec.output(bytes([key]))  # the echo
        clock.now += 0.7
        rec.tick()
    assert sink.frames() == []  # still held: never flushed before the close
    clock.now += 0.5
    rec.input(b"\r")
    rec.output(b"\r\n")  # the line is complete: out it goes, the part held back dated when it was read
    clock.now += 0.25
    rec.output(b"file.txt\n")
    rec.close(0)
    assert [f for f in sink.frames() if f[1] == "o"] == [
        [1.0, "o", "alice@host:~$ ls"],
        [3.3, "o", "\r\n"],
        [3.55, "o", "file.txt\n"],
    ]
    assert sink.text("i") == "ls\r"
    times = [f[0] for f in sink.frames()]
    assert times == sorted(times)


def test_a_value_typed_key_by_key_is_masked(masker: _core.Masker) -> None:
    """The echo of a card typed slowly, with ticks in between, is masked like a whole line."""
    sink, clock = Sink(), Clock()
    rec = recorder(sink, masker, clock)
    rec.output(b"card number: ")
    for key in CARD.encode():
        clock.now += 0.4
        rec.input(bytes([key]))
        rec.output(bytes([key]))
        rec.tick()
    rec.input(b"\r")
    rec.output(b"\r\nthanks\r\n")
    rec.close(0)
    stored = json.dumps(sink.events)
    assert CARD not in stored and CARD_DIGITS not in stored
    assert sink.text() == f"card number: {MASKED_CARD}\r\nthanks\r\n"
    assert sink.text("i") == f"{MASKED_CARD}\r"
    assert [c["line"] for c in sink.of("command_line")] == [MASKED_CARD]


def test_a_side_never_goes_back_in_time(masker: _core.Masker) -> None:
    """What is released in pieces keeps its order, whatever dates the pieces get."""
    sink, clock = Sink(), Clock()
    rec = recorder(sink, masker, clock)
    # no line break: released a few bytes at a time, some of them shortened by the masking
    data = (bytes(range(0x61, 0x7B)) + f" {EMAIL} ".encode()) * 40
    for i in range(0, len(data), 7):
        clock.now += 0.01
        rec.output(data[i : i + 7])
        if i % 21 == 0:
            rec.input(b"k")
    rec.close(0)
    assert sink.text() == masker.mask(data).decode()
    times = [f[0] for f in sink.frames()]
    assert times == sorted(times)


def test_utf8_split_across_reads_is_decoded_whole(masker: _core.Masker) -> None:
    text = "héllo € 𝄞 ok\n"
    data = text.encode()
    for split in range(1, len(data)):
        sink = Sink()
        rec = recorder(sink, masker)
        rec.output(data[:split])
        rec.output(data[split:])
        rec.close(0)
        assert sink.text() == text, split
    sink = Sink()
    rec = recorder(sink, None)
    rec.output(b"bad \xff\xfe end \xe2\x82")  # invalid bytes, and a character cut by the end
    rec.close(None)
    assert sink.text() == "bad \ufffd\ufffd end \ufffd"


def test_cap_truncates_once_then_counts(masker: _core.Masker) -> None:
    sink, clock = Sink(), Clock()
    rec = recorder(sink, masker, clock, max_bytes=10)
    rec.output(b"0123456\n")
    clock.now += 1.0
    rec.output(b"789abcdef\n")
    assert rec.truncated and rec.recorded_bytes == 10
    rec.output(b"more\n")
    rec.input(b"keys")
    rec.resize(1, 1)
    rec.close(0)
    assert sink.text() == "0123456\n78"
    assert sink.of("terminal_truncated") == [{"channel": 3, "at_bytes": 10, "t": 1.0}]
    end = sink.of("terminal_end")[0]
    assert end == {
        "channel": 3, "exit_status": 0, "recorded_bytes": 10, "dropped_bytes": 17, "truncated": True
    }  # fmt: skip
    assert sink.kinds().index("terminal_truncated") > sink.kinds().index("terminal")
    assert not any(f[1] == "r" for f in sink.frames())


def test_cap_zero_records_only_start_and_end(masker: _core.Masker) -> None:
    sink = Sink()
    rec = recorder(sink, masker, max_bytes=0)
    rec.output(b"secret output\n")
    rec.input(b"rm -rf /\r")
    rec.resize(100, 50)
    rec.tick()
    rec.close(0)
    assert sink.kinds() == ["terminal_start", "terminal_end"]
    assert sink.of("terminal_end")[0]["dropped_bytes"] == len("secret output\n") + len("rm -rf /\r")
    assert not rec.truncated  # nothing was cut: nothing was to be recorded


def test_masked_output_is_recorded_as_given() -> None:
    sink = Sink()
    rec = recorder(sink, _core.Masker([("credit_card", "last4")]))
    rec.masked_output(f"{MASKED_CARD}\n".encode())
    rec.close(0)
    assert sink.text() == f"{MASKED_CARD}\n"


# -- command lines -----------------------------------------------------------------------------------------
def lines_of(*reads: bytes) -> list[str]:
    reader = LineReader()
    out: list[str] = []
    for data in reads:
        out.extend(reader.feed(data))
    return out


def test_command_lines_from_keys() -> None:
    assert lines_of(b"ls -la\r") == ["ls -la"]
    assert lines_of(b"lx\x7fs\r", b"pwdd\x08\n") == ["ls", "pwd"]
    assert lines_of(b"rm -rf /\x15echo hi\r") == ["echo hi"]  # Ctrl-U
    assert lines_of(b"rm -rf /\x03", b"id\r") == ["id"]  # Ctrl-C drops the line
    assert lines_of(b"git push --force\x17\x17status\r") == ["git status"]  # Ctrl-W
    assert lines_of(b"\r", b"   \r\n") == []  # empty and blank lines
    assert lines_of(b"ca\tt f\x1b[A\x1b[1;5Dile\x1bOB\r") == ["cat file"]  # tab, arrows ignored
    assert lines_of(b"ec\x1b", b"[", b"1;", b"5Cho ok\r") == ["echo ok"]  # a sequence split across reads
    assert lines_of(b"\x1b[200~echo a\recho b\x1b[201~\r") == ["echo a", "echo b"]  # bracketed paste
    assert lines_of(b"\x1bbx\r") == ["x"]  # Alt-b
    assert lines_of("caf\u00e9\x7fe \u20ac\r".encode()) == ["cafe \u20ac"]  # DEL removes a whole character
    assert lines_of(b"\x1b[1\x03ok\r") == ["ok"]  # a control byte ends a broken sequence
    long = lines_of(b"x" * (LINE_MAX * 5) + b"\r")
    assert long == ["x" * LINE_MAX]


def test_command_lines_are_masked_events_of_shells_only(masker: _core.Masker) -> None:
    sink, clock = Sink(), Clock()
    rec = recorder(sink, masker, clock)
    clock.now += 2.0
    rec.input(f"echo {CARD_DIGITS[:6]}".encode())
    rec.input(f"{CARD_DIGITS[6:]}\r".encode())
    rec.close(0)
    assert sink.of("command_line") == [
        {"channel": 3, "line": "echo ************1111", "t": 2.0, "best_effort": True}
    ]
    assert CARD_DIGITS not in json.dumps(sink.events)
    sink = Sink()
    rec = recorder(sink, masker, command="cat > notes.txt")
    rec.input(b"rm -rf /\r")  # an exec channel's stdin is data, not commands
    rec.close(0)
    assert sink.of("command_line") == []
    assert sink.of("terminal_start")[0]["command"] == "cat > notes.txt"


def test_command_lines_go_on_after_truncation(masker: _core.Masker) -> None:
    sink = Sink()
    rec = recorder(sink, masker, max_bytes=4)
    rec.output(b"a lot of output\n")
    rec.input(b"whoami\r")
    rec.close(0)
    assert rec.truncated
    assert [c["line"] for c in sink.of("command_line")] == ["whoami"]


# -- the pure replay helpers -------------------------------------------------------------------------------
def ev(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"seq": 0, "ts": 0.0, "kind": kind, "data": data, "prompt_id": None}


def test_cast_orders_chunks_skips_bad_frames_and_counts_missing() -> None:
    events = [
        ev("terminal_start", {"channel": 1, "width": 90, "height": 30, "term": None, "command": "id"}),
        ev("terminal_start", {"channel": 0, "width": 80, "height": 24, "term": "xterm", "command": None}),
        ev("terminal", {"channel": 0, "seq": 3, "frames": [[2.0, "o", "c"], ["x", "o", "bad"]]}),
        ev("terminal", {"channel": 0, "seq": 1, "frames": [[0.5, "o", "a"], [0.4, "i", "k"]]}),
        ev("terminal", {"channel": 1, "seq": 1, "frames": [[0.1, "o", "uid=0"]]}),
        ev("terminal_end", {"channel": 0, "exit_status": 0}),
    ]
    assert terminal_channels(events) == [1, 0]
    rec = cast(events, 0)
    assert rec.frames == [[0.5, "o", "a"], [0.5, "i", "k"], [2.0, "o", "c"]]
    assert rec.missing == 1 and rec.end == {"channel": 0, "exit_status": 0} and rec.truncated is None
    with pytest.raises(LookupError):
        cast(events, 5)
    session = {"id": "abc", "subject": "alice", "connection": "web"}
    lines = list(asciicast_lines(session, cast(events, 1)))
    header = json.loads(lines[0])
    assert header == {
        "version": 2,
        "width": 90,
        "height": 30,
        "env": {},
        "title": "hoopgw session abc channel 1: alice@web exec id",
    }
    assert [json.loads(line) for line in lines[1:]] == [[0.1, "o", "uid=0"]]


def test_play_frames_sleeps_the_scaled_capped_gaps() -> None:
    frames = [[0.5, "o", "a"], [0.7, "i", "x"], [1.5, "o", "b"], [30.0, "r", "1x1"], [60.0, "o", "c"]]
    slept: list[float] = []
    written: list[str] = []
    play_frames(frames, written.append, speed=2.0, sleep=slept.append, max_pause=3.0)
    assert written == ["a", "b", "c"]
    assert slept == [0.25, 0.5, 3.0]
    slept.clear()
    play_frames(frames, written.append, speed=0.0, sleep=slept.append)
    assert slept == []


# -- end to end: a real store, the real CLI, the real player -----------------------------------------------
CONFIG = """
[gateway]
data_dir = "var"

[[connections]]
name = "bankdb"
type = "postgres"
listen = "127.0.0.1:15432"
upstream = "postgresql://app@127.0.0.1:5432/bank"
password = "env:HOOPGW_TEST_PW"

[[masking]]
connections = ["bankdb"]
detectors = ["credit_card", "email"]
style = "last4"
"""

SID = "ssh0000000000001"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store with an SSH session: a shell on channel 0 (a card split across reads, a prompt, a
    resize, typed commands) and an exec on channel 1; written by the real AuditWriter."""
    config_file = tmp_path_factory.mktemp("sshrec") / "gw.toml"
    config_file.write_text(CONFIG)
    config = load_config(config_file, allow_unsupported=True)
    masker = build_maskers(config, masking_key(config))["bankdb"]
    writer = AuditWriter(config.gateway.data_dir, 0.05)
    info = SessionInfo(SID, "ssh", "bankdb", "alice", ["dev"], "127.0.0.1:2", "publickey", {"user": "alice"})
    writer.session_open(info)
    clock = Clock()
    shell = TerminalRecorder(
        writer, SID, channel=0, width=100, height=30, term="xterm-256color", command=None, masker=masker,
        max_bytes=1 << 20, clock=clock,
    )  # fmt: skip
    exe = TerminalRecorder(
        writer, SID, channel=1, width=80, height=24, term=None, command="id", masker=masker,
        max_bytes=1 << 20, clock=clock,
    )  # fmt: skip
    clock.now += 0.1
    shell.output(b"alice@bank:~$ ")
    clock.now += 0.3
    shell.tick()
    for ch in b"cat cards\r":
        clock.now += 0.02
        shell.input(bytes([ch]))
        shell.output(b"\r\n" if ch == 0x0D else bytes([ch]))
    clock.now += 0.1
    shell.output(b"first " + CARD.encode()[:7])
    clock.now += 0.001
    shell.output(CARD.encode()[7:] + b" \xe2\x82")  # a euro sign split across reads
    shell.output(b"\xac end\r\n")
    exe.output(b"uid=1000(alice) gid=1000(alice)\n")
    exe.close(0)
    clock.now += 0.2
    shell.resize(120, 40)
    shell.output(b"alice@bank:~$ ")
    for ch in b"exit\r":
        shell.input(bytes([ch]))
    shell.close(0)
    writer.session_close(SID, "client disconnected", shell.mask_counts)
    writer.close()
    yield config_file


def test_store_never_holds_the_card(recorded: Path) -> None:
    db = next((recorded.parent / "var").glob("*.db"))
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, data FROM events WHERE session_id = ?", (SID,)).fetchall()
    kinds = [k for k, _ in rows]
    assert kinds.count("terminal_start") == 2 and kinds.count("terminal_end") == 2
    assert kinds.count("command_line") == 2
    body = "\n".join(d for _, d in rows)
    assert CARD not in body and CARD_DIGITS not in body and MASKED_CARD in body
    verify = hoopgw("audit", "verify", "-c", recorded)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_export_asciicast_plays_with_asciinema(recorded: Path, tmp_path: Path) -> None:
    shown = hoopgw("sessions", "show", SID[:6], "--asciicast", "-c", recorded)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (100, 30)
    assert header["env"] == {"TERM": "xterm-256color"} and isinstance(header["timestamp"], int)
    assert header["title"] == f"hoopgw session {SID} channel 0: alice@bankdb shell"
    frames = [json.loads(line) for line in lines[1:]]
    assert all(len(f) == 3 and f[1] in ("o", "i", "r") for f in frames)
    assert [f[0] for f in frames] == sorted(f[0] for f in frames)
    output = "".join(f[2] for f in frames if f[1] == "o")
    assert f"first {MASKED_CARD} \u20ac end\r\n" in output and CARD not in shown.stdout
    assert ["r", "120x40"] in [f[1:] for f in frames]
    exec_cast = hoopgw("sessions", "show", SID, "--asciicast", "--channel", "1", "-c", recorded)
    assert exec_cast.returncode == 0, exec_cast.stderr
    assert json.loads(exec_cast.stdout.splitlines()[1])[2] == "uid=1000(alice) gid=1000(alice)\n"
    bad = hoopgw("sessions", "show", SID, "--asciicast", "--channel", "7", "-c", recorded)
    assert bad.returncode == 1 and "recorded: 0, 1" in bad.stderr

    cast_file = tmp_path / "x.cast"
    cast_file.write_text(shown.stdout)
    played = subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(cast_file)],  # the player installed with hoopgw's deps
        capture_output=True,  # bytes: CR LF as played, not translated
        timeout=60,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: `cat` does not touch ours
        check=False,
    )
    assert played.returncode == 0, played.stderr
    assert played.stdout.decode() == output
    assert f"first {MASKED_CARD} \u20ac end".encode() in played.stdout


def test_replay_plays_the_terminal_and_summarises(recorded: Path) -> None:
    played = hoopgw("replay", SID, "--speed", "0", "-c", recorded)
    assert played.returncode == 0, played.stderr
    out = played.stdout
    assert out.startswith(f"replay    {SID}  ssh session on bankdb  closed (client disconnected)\n")
    assert "terminal  channel 0  shell  100x30  xterm-256color\n" in out
    assert "also recorded: channel 1 (--channel N)" in out
    assert f"first {MASKED_CARD} \u20ac end\n" in out and CARD not in out  # CR LF read as text
    assert out.rstrip("\n").endswith("end       channel 0: exit status 0")
    timed = hoopgw("replay", SID, "--speed", "1000", "--max-wait", "0.01", "-c", recorded)
    assert timed.returncode == 0 and timed.stdout == out
    exec_out = hoopgw("replay", SID, "--no-wait", "--channel", "1", "-c", recorded)
    assert "uid=1000(alice) gid=1000(alice)\n" in exec_out.stdout and "alice@bank" not in exec_out.stdout

    summary = hoopgw("replay", SID, "--summary", "-c", recorded)
    assert summary.returncode == 0, summary.stderr
    text = summary.stdout
    assert "typed  cat cards  (channel 0, best effort)" in text
    assert "typed  exit  (channel 0, best effort)" in text
    assert "terminal end  channel 1  exit status 0" in text
    assert "first" not in text  # no terminal output in a summary
    assert "masked    credit_card=1" in text and "statements" not in text
    listed = hoopgw("sessions", "show", SID, "-c", recorded)
    assert listed.returncode == 0, listed.stderr
    assert "terminal  channel=0  seq=1" in listed.stdout and CARD not in listed.stdout
    as_json = hoopgw("replay", SID, "--json", "-c", recorded)
    assert "terminal" in [e["kind"] for e in json.loads(as_json.stdout)]


def test_nul_bytes_are_not_recorded() -> None:
    sink = Sink()
    rec = TerminalRecorder(
        sink, "s1", channel=1, width=80, height=24, term=None, command="cat x", masker=None, max_bytes=1 << 20
    )
    rec.output(b"\0" * 4096)
    rec.output(b"ab\0c\n")
    rec.close(0)
    assert sink.text() == "abc\n"
