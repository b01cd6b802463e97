"""SIEM streaming: committed audit events as JSON lines to a file, stdout, syslog (UDP/TCP) and HTTP.

The SIEM side is real: plain UDP and TCP socket servers on 127.0.0.1 parse every syslog message
strictly against RFC 5424 (and RFC 6587 octet counting), an ``http.server`` checks the bearer token and
the NDJSON body, files are read back (and rotated). Events come from a real ``AuditWriter``; end to end,
from a real gateway child process in front of the test PostgreSQL.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hoopgw.audit import DB_FILE, AuditWriter
from hoopgw.audit._siem import SiemStreamer
from hoopgw.audit._siem_sinks import TCP_MAX, UDP_MAX, json_line
from hoopgw.config import AuditConfig, SiemConfig
from hoopgw.errors import SecretError, StoreError

from ._support.gateway import Gateway
from ._support.procs import clean_env, wait_until
from .conftest import GatewayFactory
from .test_audit import FakeStatement, info

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
BOM = b"\xef\xbb\xbf"
#: RFC 5424 HEADER SP STRUCTURED-DATA (nil) SP, as the gateway writes it
SYSLOG = re.compile(
    rb"<(?P<pri>[0-9]{1,3})>(?P<version>[1-9][0-9]{0,2}) "
    rb"(?P<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    rb"(?:Z|[+-][0-9]{2}:[0-9]{2})) "
    rb"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    rb"(?P<sd>-) (?P<msg>.*)\Z",
    re.DOTALL,
)


# ---------------------------------------------------------------------------------------- the SIEM side
def parse_5424(raw: bytes) -> dict[str, Any]:
    """One syslog message, checked against RFC 5424: PRI 0..191, VERSION 1, a full-date/full-time
    TIMESTAMP, printable header fields, nil STRUCTURED-DATA, a BOM then UTF-8 JSON as MSG."""
    m = SYSLOG.match(raw)
    assert m is not None, f"not RFC 5424: {raw[:200]!r}"
    pri = int(m["pri"])
    assert 0 <= pri <= 191 and str(pri).encode() == m["pri"], raw[:40]  # no leading zeros
    assert m["version"] == b"1"
    when = datetime.fromisoformat(m["ts"].decode().replace("Z", "+00:00"))
    assert when.tzinfo is not None and m["ts"].endswith(b"Z")
    msg = m["msg"]
    assert msg.startswith(BOM), "MSG must start with the UTF-8 BOM"
    line = json.loads(msg[len(BOM) :].decode("utf-8"))
    assert m["msgid"].decode() == line["kind"][:32]
    assert m["host"].decode() == line["gateway"]
    return {
        "facility": pri // 8,
        "severity": pri % 8,
        "time": when,
        "app": m["app"].decode(),
        "procid": m["procid"].decode(),
        "line": line,
        "raw": raw,
    }


class UdpSyslog:
    """A syslog receiver on UDP: one message per datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.address = f"udp://127.0.0.1:{self.port}"
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.datagrams.append(data)

    def messages(self) -> list[dict[str, Any]]:
        return [parse_5424(d) for d in list(self.datagrams)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class TcpSyslog:
    """A syslog receiver on TCP with octet-counting framing (RFC 6587 ``LEN SP MSG``).

    ``read=False``: accept connections and never read (a stuck SIEM). ``drop_after``: close each
    connection after that many messages (a receiver that restarts).
    """

    def __init__(self, *, read: bool = True, drop_after: int | None = None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        if not read:
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.read, self.drop_after = read, drop_after
        self.frames: list[bytes] = []
        self.connections = 0
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if not self.read:
                self.held.append(conn)
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        got = 0
        with conn:
            while not self._stop.is_set():
                while True:  # every complete frame in buf
                    length, sp, rest = buf.partition(b" ")
                    if not sp:
                        assert len(buf) < 8, f"no frame length: {buf[:40]!r}"
                        break
                    assert re.fullmatch(rb"[1-9][0-9]*", length), f"bad MSG-LEN {length[:20]!r}"
                    n = int(length)
                    if len(rest) < n:
                        break
                    self.frames.append(rest[:n])
                    buf = rest[n:]
                    got += 1
                    if self.drop_after is not None and got >= self.drop_after:
                        return
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                buf += data

    def messages(self) -> list[dict[str, Any]]:
        return [parse_5424(f) for f in list(self.frames)]

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for conn in self.held:
            conn.close()
        self.server.close()


class HttpSiem:
    """An HTTP collector: answers 401 without ``Bearer <token>``, 503 to the first ``fail_first`` POSTs."""

    def __init__(self, token: str | None = "siem-token-0123456789", fail_first: int = 0) -> None:
        self.token = token
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        self.fail_left = fail_first
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    if (
                        outer.token is not None
                        and self.headers.get("Authorization") != f"Bearer {outer.token}"
                    ):
                        outer.refused += 1
                        status = 401
                    elif outer.fail_left > 0:
                        outer.fail_left -= 1
                        status = 503
                    else:
                        outer.posts.append((dict(self.headers.items()), body))
                        status = 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest?source=hoopgw"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def lines(self) -> list[dict[str, Any]]:
        with self.lock:
            posts = list(self.posts)
        out = []
        for headers, body in posts:
            assert headers["Content-Type"] == "application/x-ndjson"
            assert body.endswith(b"\n")
            out += [json.loads(line) for line in body.decode().splitlines()]
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def udp() -> Iterator[UdpSyslog]:
    r = UdpSyslog()
    yield r
    r.close()


@pytest.fixture
def tcp() -> Iterator[TcpSyslog]:
    r = TcpSyslog()
    yield r
    r.close()


@pytest.fixture
def collector() -> Iterator[HttpSiem]:
    r = HttpSiem()
    yield r
    r.close()


def dead_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---------------------------------------------------------------------------------------- gateway side
def audit_config(*sinks: Mapping[str, Any]) -> AuditConfig:
    return AuditConfig(siem=tuple(SiemConfig.model_validate(dict(s)) for s in sinks))


def streamer(
    writer: AuditWriter, *sinks: Mapping[str, Any], report_interval: float = 3600.0, start: bool = True
) -> SiemStreamer:
    s = SiemStreamer.from_config(audit_config(*sinks), writer=writer, report_interval=report_interval)
    writer.add_listener(s.offer)
    if start:
        s.start()
    return s


def session(writer: AuditWriter, statements: int = 5, sql: str = "select {i}") -> str:
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    for i in range(statements):
        writer.statement(sid, FakeStatement(sql.format(i=i)), prompt_id="p1" if i == 0 else None)
    writer.event(sid, "policy_denied", {"sql": "drop table t", "rule": "no-ddl"})
    writer.event(sid, "protocol_error", {"side": "client", "error": "bad frame"})
    writer.session_close(sid, "client_terminated")
    return sid


def stored(data_dir: Path) -> list[dict[str, Any]]:
    """Every event row of the store, in seq order (data as the stored text)."""
    conn = sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, ts, session_id, kind, data, prompt_id, hash FROM events ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    keys = ("seq", "ts", "session_id", "kind", "data", "prompt_id", "hash")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def checkpoints(data_dir: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT seq, record FROM checkpoints ORDER BY seq"))
    finally:
        conn.close()


def assert_stream_matches_store(lines: list[dict[str, Any]], data_dir: Path) -> None:
    """The stream carries every stored event in chain order with the store's seq, time, hash and data,
    and each checkpoint right after the event it seals."""
    rows = {r["seq"]: r for r in stored(data_dir)}
    events = [ln for ln in lines if ln["kind"] != "audit_checkpoint"]
    assert [ln["seq"] for ln in events] == sorted(rows), "events missing, duplicated or out of order"
    for ln in events:
        row = rows[ln["seq"]]
        assert ln["hash"] == row["hash"].hex()
        assert ln["epoch"] == row["ts"]  # the exact double the hash covers
        assert datetime.fromisoformat(ln["ts"].replace("Z", "+00:00")).timestamp() == pytest.approx(row["ts"])
        assert ln["data"] == json.loads(row["data"])
        assert (ln["kind"], ln["session_id"], ln["prompt_id"]) == (
            row["kind"],
            row["session_id"],
            row["prompt_id"],
        )
    seals = [ln for ln in lines if ln["kind"] == "audit_checkpoint"]
    assert [(s["seq"], json.dumps(s["data"], sort_keys=True, separators=(",", ":"))) for s in seals] == [
        (seq, json.dumps(json.loads(rec), sort_keys=True, separators=(",", ":")))
        for seq, rec in checkpoints(data_dir)
    ]
    for s in seals:
        assert s["hash"] == rows[s["seq"]]["hash"].hex()
        assert lines.index(s) == lines.index(next(ln for ln in events if ln["seq"] == s["seq"])) + 1


# ---------------------------------------------------------------------------------------- tests
def test_json_line_embeds_the_stored_data_verbatim() -> None:
    data = '{"sql":"select \\"x\\"","n":1.5,"z":[]}'
    event = (7, 1764072000.123456, "s-1", "statement", data, None, bytes(range(32)))
    raw = json_line(event, "gw1")
    assert b'"data":' + data.encode() in raw  # not re-encoded: the bytes the hash covers
    line = json.loads(raw)
    assert line == {
        "seq": 7,
        "ts": "2025-11-25T12:00:00.123456Z",
        "epoch": 1764072000.123456,
        "session_id": "s-1",
        "kind": "statement",
        "data": {"sql": 'select "x"', "n": 1.5, "z": []},
        "prompt_id": None,
        "hash": bytes(range(32)).hex(),
        "gateway": "gw1",
    }


def test_syslog_udp_and_tcp_are_rfc5424_and_carry_the_chain(
    tmp_path: Path, udp: UdpSyslog, tcp: TcpSyslog
) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.01, checkpoint_every=4)
    siem = streamer(
        writer,
        {"type": "syslog", "address": udp.address, "app_name": "bank-gw"},
        {"type": "syslog", "address": tcp.address, "facility": 10},
    )
    session(writer)
    writer.close()
    siem.stop()
    total = len(stored(tmp_path)) + len(checkpoints(tmp_path))
    wait_until(lambda: len(udp.datagrams) >= total and len(tcp.frames) >= total, 10, what="syslog messages")
    for receiver, facility, app in ((udp, 13, "bank-gw"), (tcp, 10, "hoopgw")):
        messages = receiver.messages()
        assert_stream_matches_store([m["line"] for m in messages], tmp_path)
        assert {m["facility"] for m in messages} == {facility}
        assert {m["app"] for m in messages} == {app}
        assert {m["procid"] for m in messages} == {str(os.getpid())}
        severity = {m["line"]["kind"]: m["severity"] for m in messages}
        assert severity == {
            "session_open": 6,
            "statement": 6,
            "policy_denied": 5,
            "protocol_error": 4,
            "session_close": 6,
            "audit_checkpoint": 6,
        }
    assert [s["sent"] for s in siem.stats()] == [total, total]


def test_a_message_too_long_leaves_out_data_but_stays_json(
    tmp_path: Path, udp: UdpSyslog, tcp: TcpSyslog
) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.01)
    siem = streamer(
        writer, {"type": "syslog", "address": udp.address}, {"type": "syslog", "address": tcp.address}
    )
    sid = writer.new_session_id()
    writer.session_open(info(sid))
    writer.statement(sid, FakeStatement("select '" + "é" * 20_000 + "'"))  # 40 kB of UTF-8
    writer.statement(sid, FakeStatement("select '" + "x" * 70_000 + "'"))
    writer.close()
    siem.stop()
    wait_until(lambda: len(udp.datagrams) >= 4 and len(tcp.frames) >= 4, 10, what="syslog messages")
    for receiver, limit in ((udp, UDP_MAX), (tcp, TCP_MAX)):
        messages = receiver.messages()
        assert all(len(m["raw"]) <= limit for m in messages)
        big = [m["line"] for m in messages if m["line"]["kind"] == "statement"]
        assert len(big) == 2
        for line in big:
            if line.get("truncated"):
                assert line["data"] is None and line["data_bytes"] > limit and len(line["hash"]) == 64
    udp_big = [m["line"] for m in udp.messages() if m["line"]["kind"] == "statement"]
    tcp_big = [m["line"] for m in tcp.messages() if m["line"]["kind"] == "statement"]
    assert [bool(x.get("truncated")) for x in udp_big] == [True, True]
    assert [bool(x.get("truncated")) for x in tcp_big] == [False, True]  # 40 kB fits over TCP
    assert tcp_big[0]["data"]["sql"].count("é") == 20_000


def has_seqs(receiver: TcpSyslog, n: int) -> Callable[[], bool]:
    """Whether ``receiver`` got at least ``n`` distinct events."""
    return lambda: len({m["line"]["seq"] for m in receiver.messages()}) >= n


def test_tcp_reconnects_when_the_receiver_drops_the_connection(tmp_path: Path) -> None:
    receiver = TcpSyslog(drop_after=3)
    try:
        writer = AuditWriter(tmp_path, flush_interval=0.01)
        siem = streamer(writer, {"type": "syslog", "address": receiver.address, "timeout": 1})
        for round_ in range(4):
            for i in range(3):
                writer.event(None, "note", {"round": round_, "i": i})
            writer.flush(10)
            wait_until(has_seqs(receiver, 3 * (round_ + 1)), 15, what=f"round {round_} over TCP")
        writer.close()
        siem.stop()
        seqs = {m["line"]["seq"] for m in receiver.messages() if m["line"]["kind"] == "note"}
        assert seqs == {r["seq"] for r in stored(tmp_path)}
        assert receiver.connections >= 2
    finally:
        receiver.close()


def test_http_posts_ndjson_with_the_bearer_token_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: HttpSiem
) -> None:
    collector.fail_left = 1  # the first POST answers 503
    monkeypatch.setenv("SIEM_TOKEN", "wrong-token")
    monkeypatch.setenv("SIEM_URL", collector.url)
    writer = AuditWriter(tmp_path, flush_interval=0.01, checkpoint_every=5)
    siem = streamer(writer, {"type": "http", "url": "env:SIEM_URL", "token": "env:SIEM_TOKEN", "timeout": 2})
    assert siem.sinks == ["siem[0] http (127.0.0.1)"]  # never the path or query
    session(writer, statements=3)
    writer.flush(10)
    wait_until(lambda: collector.refused >= 1, 10, what="a refused POST")
    monkeypatch.setenv("SIEM_TOKEN", collector.token or "")  # the token was rotated: read again on 401
    wait_until(lambda: len(collector.lines()) >= len(stored(tmp_path)), 15, what="the events over HTTP")
    session(writer, statements=20)
    writer.close()
    siem.stop()
    assert_stream_matches_store(collector.lines(), tmp_path)
    with collector.lock:
        posts = list(collector.posts)
    assert all(h["Authorization"] == f"Bearer {collector.token}" for h, _ in posts)
    assert len(posts) < len(collector.lines())  # batched
    [stats] = siem.stats()
    assert stats["errors"] >= 2 and stats["failed"] == 0 and stats["dropped"] == 0
    assert "wrong-token" not in json.dumps(stats)


def test_file_sink_appends_and_follows_rotation(tmp_path: Path) -> None:
    out = tmp_path / "siem" / "audit.jsonl"
    out.parent.mkdir()
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    writer = AuditWriter(data_dir, flush_interval=0.01)
    siem = streamer(writer, {"type": "file", "path": str(out)})
    session(writer, statements=3)
    writer.flush(10)
    wait_until(
        lambda: out.exists() and out.read_bytes().count(b"\n") >= len(stored(data_dir)), 10, what="lines"
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.rename(out.with_suffix(".jsonl.1"))  # logrotate moves the file away
    session(writer, statements=3)
    writer.close()
    siem.stop()
    old = out.with_suffix(".jsonl.1").read_text().splitlines()
    new = out.read_text().splitlines()
    assert old and new
    lines = [json.loads(x) for x in old + new]
    assert_stream_matches_store(lines, data_dir)
    assert min(json.loads(x)["seq"] for x in new) > max(json.loads(x)["seq"] for x in old)


def test_a_failing_file_is_counted_and_recorded(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC (a full disk): the stream counts, the trail records."""
    writer = AuditWriter(tmp_path, flush_interval=0.01)
    siem = streamer(writer, {"type": "file", "path": "/dev/full"})
    session(writer)
    writer.flush(10)
    wait_until(lambda: siem.stats()[0]["failed"] >= 9, 10, what="failed writes")
    siem.report()
    writer.close()
    siem.stop()
    [stats] = siem.stats()
    assert stats["sent"] == 0 and stats["last_error"] == "write failed: No space left on device"
    [error] = [json.loads(r["data"]) for r in stored(tmp_path) if r["kind"] == "siem_error"]
    assert error["sink"] == "siem[0] file /dev/full" and error["failed"] >= 9 and error["errors"] >= 1


def test_stdout_gets_only_json_lines(tmp_path: Path) -> None:
    """In a child process: the lines go to stdout, one per event; the log stays on stderr."""
    script = f"""
import sys
from hoopgw.audit import AuditWriter
from hoopgw.log import setup_logging
from tests.test_siem import session, streamer
setup_logging("info")
writer = AuditWriter({str(tmp_path)!r}, flush_interval=0.01)
siem = streamer(writer, {{"type": "stdout"}}, {{"type": "syslog", "address": "tcp://127.0.0.1:{dead_port()}"}})
session(writer)
siem.report()
writer.close()
siem.stop(0.5)
"""
    res = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=Path(__file__).parents[1],
    )
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert_stream_matches_store(lines, tmp_path)
    assert "siem_sink_failing" in res.stderr  # the dead TCP sink is logged, on stderr


def test_overflow_never_blocks_the_writer_and_is_recorded(tmp_path: Path) -> None:
    """A receiver that accepts and never reads, a queue of 5: every event is still committed, and the
    store says how many the sink dropped."""
    stuck = TcpSyslog(read=False)
    try:
        writer = AuditWriter(tmp_path, flush_interval=0.01)
        siem = streamer(writer, {"type": "syslog", "address": stuck.address, "queue": 5, "timeout": 0.5})
        for i in range(2000):
            writer.event(None, "note", {"i": i, "pad": "x" * 4000})
        assert writer.flush(60), "the writer was held up"
        [stats] = siem.stats()
        assert stats["dropped"] > 0
        assert stats["queued"] <= 5
        siem.report()
        writer.close()
        siem.stop(0.5)
    finally:
        stuck.close()
    rows = stored(tmp_path)
    assert sum(r["kind"] == "note" for r in rows) == 2000
    overflow = [json.loads(r["data"]) for r in rows if r["kind"] == "siem_overflow"]
    assert [o["sink"] for o in overflow] == [f"siem[0] syslog {stuck.address}"]
    assert overflow[0]["dropped"] == stats["dropped"]


def test_overflow_count_is_exact(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.01, checkpoint_every=10_000)
    siem = streamer(writer, {"type": "stdout", "queue": 5}, start=False)  # nothing takes from the queue
    for i in range(50):
        writer.event(None, "note", {"i": i})
    assert writer.flush(10)
    siem.report()
    writer.close()
    siem.stop(0.1)
    [overflow] = [json.loads(r["data"]) for r in stored(tmp_path) if r["kind"] == "siem_overflow"]
    assert overflow == {"sink": "siem[0] stdout", "dropped": 45}


def test_counts_are_recorded_periodically_at_most_once_per_interval(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.01)
    siem = streamer(
        writer,
        {"type": "syslog", "address": f"tcp://127.0.0.1:{dead_port()}", "queue": 3, "timeout": 0.5},
        report_interval=0.3,
    )
    started = time.monotonic()
    for i in range(40):
        writer.event(None, "note", {"i": i})
        time.sleep(0.02)
    kinds = ("siem_overflow", "siem_error")
    wait_until(lambda: {r["kind"] for r in stored(tmp_path)} >= set(kinds), 10, what="recorded counts")
    writer.close()
    elapsed = time.monotonic() - started
    siem.stop(0.2)
    rows = stored(tmp_path)
    for kind in kinds:
        n = sum(r["kind"] == kind for r in rows)
        assert 1 <= n <= elapsed / 0.3 + 1, (kind, n, elapsed)
    errors = [json.loads(r["data"]) for r in rows if r["kind"] == "siem_error"]
    assert errors[0]["error"] == "cannot connect: Connection refused"


def test_kinds_filter(tmp_path: Path, udp: UdpSyslog) -> None:
    writer = AuditWriter(tmp_path, flush_interval=0.01, checkpoint_every=3)
    siem = streamer(
        writer, {"type": "syslog", "address": udp.address, "kinds": ("policy_denied", "audit_checkpoint")}
    )
    session(writer)
    writer.close()
    siem.stop()
    want = 1 + len(checkpoints(tmp_path))
    wait_until(lambda: len(udp.datagrams) >= want, 10, what="filtered messages")
    assert {m["line"]["kind"] for m in udp.messages()} == {"policy_denied", "audit_checkpoint"}


def test_config_problems_stop_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError, match=r"audit.siem\[0\]: cannot open .*: No such file or directory"):
        SiemStreamer.from_config(
            audit_config({"type": "file", "path": str(tmp_path / "no" / "x")}), writer=None
        )
    monkeypatch.delenv("NO_SUCH_SIEM_URL", raising=False)
    with pytest.raises(SecretError, match="NO_SUCH_SIEM_URL"):
        SiemStreamer.from_config(audit_config({"type": "http", "url": "env:NO_SUCH_SIEM_URL"}), writer=None)
    monkeypatch.setenv("SIEM_URL", "ftp://user:pw@example.com/x")
    with pytest.raises(SecretError) as err:
        SiemStreamer.from_config(audit_config({"type": "http", "url": "env:SIEM_URL"}), writer=None)
    assert "pw" not in str(err.value)


# ---------------------------------------------------------------------------------------- end to end
MASKING = {"masking": [{"connections": ["bankdb"], "detectors": ["credit_card"], "style": "last4"}]}


def test_gateway_streams_masked_statements_and_its_final_checkpoint(
    gateway_factory: GatewayFactory, udp: UdpSyslog, tcp: TcpSyslog, collector: HttpSiem, tmp_path: Path
) -> None:
    out = tmp_path / "siem.jsonl"
    gw: Gateway = gateway_factory(
        extra={
            **MASKING,
            "audit": {
                "siem": [
                    {"type": "syslog", "address": udp.address},
                    {"type": "syslog", "address": tcp.address},
                    {"type": "file", "path": str(out)},
                    {"type": "http", "url": collector.url, "token": "env:SIEM_TOKEN"},
                ]
            },
        },
        env={"SIEM_TOKEN": collector.token or ""},
    )
    with psycopg.connect(gw.conninfo(application_name="siem-e2e"), autocommit=True) as conn:
        assert conn.execute(f"SELECT '{CARD}' AS card").fetchall() == [("**** **** **** 1111",)]
        conn.execute("SELECT %s::text", (CARD_DIGITS,)).fetchall()
    wait_until(lambda: any(m["line"]["kind"] == "statement" for m in udp.messages()), 15, what="a statement")
    assert gw.stop() == 0
    streams = {
        "udp": [m["line"] for m in udp.messages()],
        "tcp": [m["line"] for m in tcp.messages()],
        "file": [json.loads(x) for x in out.read_text().splitlines()],
        "http": collector.lines(),
    }
    raw = [m["raw"] for m in udp.messages() + tcp.messages()]
    for name, lines in streams.items():
        text = json.dumps(lines) + b"".join(raw).decode("utf-8", "replace")
        assert CARD not in text and CARD_DIGITS not in text, name
        statements = [ln for ln in lines if ln["kind"] == "statement"]
        assert any(ln["data"]["sql"] == "SELECT '**** **** **** 1111' AS card" for ln in statements), name
        assert lines[-1]["kind"] == "audit_checkpoint", f"{name}: the final checkpoint was not streamed"
        assert_stream_matches_store(lines, gw.data_dir)


def test_a_dead_siem_never_stops_the_gateway(gateway_factory: GatewayFactory) -> None:
    tcp_address = f"tcp://127.0.0.1:{dead_port()}"
    gw: Gateway = gateway_factory(
        extra={
            "audit": {
                "siem": [
                    {"type": "http", "url": f"http://127.0.0.1:{dead_port()}/in", "timeout": 1},
                    {"type": "syslog", "address": tcp_address, "timeout": 1, "queue": 2},
                ]
            }
        }
    )
    with psycopg.connect(gw.conninfo(), autocommit=True) as conn:
        for i in range(50):
            assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        wait_until(lambda: gw.log_text().count("siem_sink_failing") >= 2, 15, what="both sinks failing")
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert gw.stop() == 0
    rows = stored(gw.data_dir)
    assert sum(r["kind"] == "statement" for r in rows) == 51
    errors = {e["sink"]: e for e in (json.loads(r["data"]) for r in rows if r["kind"] == "siem_error")}
    assert errors.keys() == {"siem[0] http (127.0.0.1)", f"siem[1] syslog {tcp_address}"}
    assert all(e["errors"] >= 1 for e in errors.values())
    assert errors["siem[0] http (127.0.0.1)"]["error"] == "ConnectError"
    assert errors[f"siem[1] syslog {tcp_address}"]["error"] == "cannot connect: Connection refused"
    overflow = [json.loads(r["data"]) for r in rows if r["kind"] == "siem_overflow"]
    assert [o["sink"] for o in overflow] == [f"siem[1] syslog {tcp_address}"]  # its queue of 2 overflowed
