"""hoopgw._core SftpSession and ScpStream, through the binding, against hand-built packets and the
real OpenSSH ``sftp``/``sftp-server`` and ``scp -t``/``scp -f``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hoopgw._core import ScpStream, SftpSession

# --- an independent SFTP v3 encoder --------------------------------------------------------------

INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = range(1, 11)
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
STATUS, HANDLE, DATA, NAME, ATTRS = range(101, 106)
EXTENDED, EXTENDED_REPLY = 200, 201


def s(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!I", len(raw)) + raw


def pkt(kind: int, *fields: bytes | int) -> bytes:
    body = bytes([kind]) + b"".join(struct.pack("!I", f) if isinstance(f, int) else f for f in fields)
    return struct.pack("!I", len(body)) + body


def status(rid: int, code: int, msg: str = "") -> bytes:
    return pkt(STATUS, rid, code, s(msg), s(""))


def u64(value: int) -> bytes:
    return struct.pack("!Q", value)


NO_ATTRS = struct.pack("!I", 0)


def decode_status(packet: bytes) -> tuple[int, int, str, str]:
    (length,) = struct.unpack_from("!I", packet)
    assert length == len(packet) - 4
    kind, rid, code, mlen = struct.unpack_from("!BIII", packet, 4)
    assert kind == STATUS
    msg = packet[17 : 17 + mlen].decode()
    (llen,) = struct.unpack_from("!I", packet, 17 + mlen)
    lang = packet[21 + mlen : 21 + mlen + llen].decode()
    assert 21 + mlen + llen == len(packet)
    return rid, code, msg, lang


def feed_all(session: SftpSession, data: bytes) -> tuple[bytes, list[dict[str, object]]]:
    forwarded, ops = b"", []
    for chunk, op in session.feed_client(data):
        forwarded += chunk
        if op is not None:
            ops.append(op)
    return forwarded, ops


# --- decisions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (
            pkt(OPEN, 1, s("/a"), 0x1A, NO_ATTRS),
            {"op": "open", "path": "/a", "flags": ["write", "create", "truncate"], "write": True},
        ),
        (
            pkt(OPEN, 1, s("/a"), 0x01, NO_ATTRS),
            {"op": "open", "path": "/a", "flags": ["read"], "write": False},
        ),
        (
            pkt(OPEN, 1, s("/a"), 0x25, NO_ATTRS),
            {"op": "open", "path": "/a", "flags": ["read", "append", "excl"], "write": True},
        ),
        (pkt(OPENDIR, 1, s("/d")), {"op": "opendir", "path": "/d", "write": False}),
        (pkt(REMOVE, 1, s("/f")), {"op": "remove", "path": "/f", "write": True}),
        (pkt(RENAME, 1, s("/a"), s("/b")), {"op": "rename", "path": "/a", "target": "/b", "write": True}),
        (
            pkt(EXTENDED, 1, s("posix-rename@openssh.com"), s("/a"), s("/b")),
            {"op": "rename", "path": "/a", "target": "/b", "write": True},
        ),
        (pkt(MKDIR, 1, s("/d"), NO_ATTRS), {"op": "mkdir", "path": "/d", "write": True}),
        (pkt(RMDIR, 1, s("/d")), {"op": "rmdir", "path": "/d", "write": True}),
        (pkt(SETSTAT, 1, s("/f"), NO_ATTRS), {"op": "setstat", "path": "/f", "write": True}),
        (
            pkt(EXTENDED, 1, s("lsetstat@openssh.com"), s("/f"), NO_ATTRS),
            {"op": "setstat", "path": "/f", "write": True},
        ),
        # a handle the session never saw returned: no path, and flagged
        (
            pkt(FSETSTAT, 1, s("h"), NO_ATTRS),
            {"op": "fsetstat", "path": "", "write": True, "unknown_handle": True},
        ),
        # OpenSSH order: target first, link path second
        (pkt(SYMLINK, 1, s("/t"), s("/l")), {"op": "symlink", "path": "/l", "target": "/t", "write": True}),
        (
            pkt(EXTENDED, 1, s("hardlink@openssh.com"), s("/old"), s("/new")),
            {"op": "link", "path": "/new", "target": "/old", "write": True},
        ),
        (
            pkt(EXTENDED, 1, s("copy-data"), s("h")),
            {"op": "extended", "name": "copy-data", "path": "", "write": True},
        ),
        (pkt(MKDIR, 1, s(b"caf\xff"), NO_ATTRS), {"op": "mkdir", "path": "caf\ufffd", "write": True}),
    ],
)
def test_decision_ops(packet: bytes, expected: dict[str, object]) -> None:
    session = SftpSession()
    chunks = session.feed_client(packet)
    assert chunks == [(packet, {"id": 1, **expected})]


@pytest.mark.parametrize(
    "packet",
    [
        pkt(INIT, 3),
        pkt(STAT, 1, s("/a")),
        pkt(LSTAT, 1, s("/a")),
        pkt(FSTAT, 1, s("h")),
        pkt(REALPATH, 1, s(".")),
        pkt(READLINK, 1, s("/l")),
        pkt(READDIR, 1, s("h")),
        pkt(READ, 1, s("h"), u64(0), 100),
        pkt(WRITE, 1, s("h"), u64(0), s("data")),
        pkt(CLOSE, 1, s("h")),
        pkt(EXTENDED, 1, s("statvfs@openssh.com"), s("/")),
        pkt(EXTENDED, 1, s("limits@openssh.com")),
        pkt(EXTENDED, 1, s("expand-path@openssh.com"), s("~")),
        pkt(EXTENDED, 1, s("fsync@openssh.com"), s("h")),
        pkt(77, 1, 2, 3),
    ],
)
def test_pass_through(packet: bytes) -> None:
    session = SftpSession()
    assert session.feed_client(packet) == [(packet, None)]
    assert session.feed_server(status(1, 0)) == []
    assert session.finish() == []


def test_chunks_coalesce_and_hold_partial_packets() -> None:
    session = SftpSession()
    init, rm = pkt(INIT, 3), pkt(REMOVE, 2, s("/x"))
    stat = [pkt(STAT, rid, s("/x")) for rid in (1, 3, 4, 5, 6)]
    chunks = session.feed_client(init + stat[0] + rm + stat[1] + rm[:5])
    assert [(c, op is not None) for c, op in chunks] == [
        (init + stat[0], False),
        (rm, True),
        (stat[1], False),
    ]
    session.feed_server(status(2, 0))  # request id 2 is free again
    assert session.feed_client(rm[5:-1]) == []
    chunks = session.feed_client(rm[-1:] + stat[2][:2])
    assert len(chunks) == 1 and chunks[0][0] == rm
    assert session.feed_client(stat[2][2:]) == [(stat[2], None)]
    # whole pass-through packets with nothing held: the very object comes back
    data = stat[3] + stat[4]
    [(chunk, op)] = session.feed_client(data)
    assert chunk is data and op is None


def test_refuse_answers_permission_denied_and_is_recorded_next() -> None:
    session = SftpSession()
    chunks = session.feed_client(pkt(REMOVE, 41, s("/etc/passwd")))
    _, op = chunks[0]
    assert op is not None and op["id"] == 41
    reply = session.refuse(41, "denied by policy: /etc/*")
    assert decode_status(reply) == (41, 3, "denied by policy: /etc/*", "")
    assert session.feed_server(b"") == [{"op": "remove", "path": "/etc/passwd", "status": "refused"}]
    assert session.finish() == []
    # refused without a server read: finish returns it
    session = SftpSession()
    session.feed_client(pkt(OPEN, 1, s("/x"), 1, NO_ATTRS))
    session.refuse(1, "no")
    assert session.finish() == [{"op": "open", "path": "/x", "flags": ["read"], "status": "refused"}]


# --- records -------------------------------------------------------------------------------------

SCRIPT: list[tuple[bytes, bytes]] = [
    (pkt(INIT, 3), pkt(VERSION, 3, s("posix-rename@openssh.com"), s("1"))),
    (pkt(OPEN, 1, s("up"), 0x1A, NO_ATTRS), pkt(HANDLE, 1, s("H1"))),
    (
        pkt(WRITE, 2, s("H1"), u64(0), s(b"x" * 1000)) + pkt(WRITE, 3, s("H1"), u64(1000), s(b"y" * 24)),
        status(2, 0) + status(3, 0),
    ),
    (pkt(WRITE, 4, s("H1"), u64(1024), s(b"z" * 10)), status(4, 4, "disk full")),
    (pkt(CLOSE, 5, s("H1")), status(5, 0)),
    (pkt(OPEN, 6, s("down"), 1, NO_ATTRS), pkt(HANDLE, 6, s("H2"))),
    (
        pkt(READ, 7, s("H2"), u64(0), 512) + pkt(READ, 8, s("H2"), u64(512), 512),
        pkt(DATA, 8, s(b"b" * 100)) + pkt(DATA, 7, s(b"a" * 512)),
    ),
    (pkt(READ, 9, s("H2"), u64(612), 512) + pkt(CLOSE, 10, s("H2")), status(9, 1) + status(10, 0)),
    (pkt(OPEN, 11, s("missing"), 1, NO_ATTRS), status(11, 2, "No such file")),
    (pkt(MKDIR, 12, s("d"), NO_ATTRS), status(12, 0)),
    (pkt(RENAME, 13, s("up"), s("d/up")), status(13, 0)),
    (pkt(REMOVE, 14, s("d/up")), status(14, 3)),
    (pkt(RMDIR, 15, s("d")), status(15, 4)),
    (pkt(OPENDIR, 16, s("d")), pkt(HANDLE, 16, s("D1"))),
    (pkt(READDIR, 17, s("D1")), pkt(NAME, 17, 0)),
    (pkt(CLOSE, 18, s("D1")), status(18, 0)),
    (pkt(EXTENDED, 19, s("x@example.com")), pkt(EXTENDED_REPLY, 19)),
    (pkt(OPEN, 20, s("left-open"), 2, NO_ATTRS), pkt(HANDLE, 20, s("H3"))),
    (pkt(MKDIR, 21, s("unanswered"), NO_ATTRS), b""),
]

EXPECTED: list[dict[str, object]] = [
    {"op": "open", "path": "up", "flags": ["write", "create", "truncate"], "status": "ok"},
    {"op": "close", "path": "up", "bytes_read": 0, "bytes_written": 1024, "status": "ok"},
    {"op": "open", "path": "down", "flags": ["read"], "status": "ok"},
    {"op": "close", "path": "down", "bytes_read": 612, "bytes_written": 0, "status": "ok"},
    {"op": "open", "path": "missing", "flags": ["read"], "status": "no_such_file"},
    {"op": "mkdir", "path": "d", "status": "ok"},
    {"op": "rename", "path": "up", "target": "d/up", "status": "ok"},
    {"op": "remove", "path": "d/up", "status": "permission_denied"},
    {"op": "rmdir", "path": "d", "status": "failure"},
    {"op": "opendir", "path": "d", "status": "ok"},
    {"op": "extended", "path": "", "name": "x@example.com", "status": "ok"},
    {"op": "open", "path": "left-open", "flags": ["write"], "status": "ok"},
    {"op": "mkdir", "path": "unanswered", "status": "no reply"},
    {"op": "close", "path": "left-open", "bytes_read": 0, "bytes_written": 0, "status": "unclosed"},
]


def run_script(cut: int | None = None) -> tuple[bytes, list[dict[str, object]], list[dict[str, object]]]:
    """The script in order, each step's bytes fed in one read, except that the read holding offset
    ``cut`` of the whole transcript (both directions, in order) is split there."""
    session = SftpSession()
    forwarded, ops, records = b"", [], []
    offset = 0
    for c, r in SCRIPT:
        for direction, data in (("c", c), ("s", r)):
            at = None if cut is None else cut - offset
            parts = [data[:at], data[at:]] if at is not None and 0 <= at <= len(data) else [data]
            offset += len(data)
            for part in parts:
                if direction == "c":
                    f, o = feed_all(session, part)
                    forwarded += f
                    ops += o
                else:
                    records += session.feed_server(part)
    assert session.version == 3
    records += session.finish()
    return forwarded, ops, records


def test_records_of_a_session() -> None:
    forwarded, ops, records = run_script()
    assert forwarded == b"".join(c for c, _ in SCRIPT)
    assert [o["op"] for o in ops] == [
        "open", "open", "open", "mkdir", "rename", "remove", "rmdir", "opendir", "extended", "open", "mkdir",
    ]  # fmt: skip
    assert records == EXPECTED


def test_every_split_gives_the_same_result() -> None:
    whole = run_script()
    total = sum(len(c) + len(r) for c, r in SCRIPT)
    for cut in range(total + 1):
        assert run_script(cut) == whole, cut
    # byte by byte
    session = SftpSession()
    forwarded, records = b"", []
    for c, r in SCRIPT:
        for i in range(len(c)):
            forwarded += b"".join(chunk for chunk, _ in session.feed_client(c[i : i + 1]))
        for i in range(len(r)):
            records += session.feed_server(r[i : i + 1])
    records += session.finish()
    assert (forwarded, records) == (whole[0], whole[2])


# --- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack("!I", 0), "sftp packet length 0"),
        (struct.pack("!I", 0xFFFFFFFF), "sftp packet length 4294967295 exceeds limit 1048576"),
        (pkt(OPEN, 1, s("/a")), "sftp open: truncated pflags"),
        (pkt(REMOVE, 1, struct.pack("!I", 50) + b"short"), "sftp remove: truncated filename"),
        (pkt(RENAME, 1, s("/a")), "sftp rename: truncated newpath"),
        (struct.pack("!IBH", 3, REMOVE, 0), "sftp remove: truncated request id"),
        (pkt(INIT), "sftp init: truncated version"),
        (pkt(CLOSE, 1, s(b"h" * 257)), "sftp close: handle of 257 bytes (at most 256)"),
    ],
)
def test_malformed_client_packets(data: bytes, message: str) -> None:
    session = SftpSession()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        session.feed_client(data)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        session.feed_client(pkt(INIT, 3))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pkt(VERSION, 6), "unsupported SFTP version 6"),
        (pkt(VERSION, 2), "unsupported SFTP version 2"),
        (pkt(STATUS, 1), "sftp status: truncated error code"),
        (pkt(DATA, 1, struct.pack("!I", 10) + b"abc"), "sftp data: truncated data"),
        (pkt(HANDLE, 1, s(b"h" * 300)), "sftp handle: handle of 300 bytes (at most 256)"),
        (struct.pack("!I", 0), "sftp packet length 0"),
    ],
)
def test_malformed_server_packets(data: bytes, message: str) -> None:
    session = SftpSession()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        session.feed_server(data)


def test_max_packet_is_configurable_and_checked_early() -> None:
    session = SftpSession(max_packet=100)
    with pytest.raises(ValueError, match="exceeds limit 100"):
        session.feed_client(struct.pack("!I", 101))  # the length word alone is enough
    session = SftpSession(100)
    big = pkt(WRITE, 1, s("h"), u64(0), s(b"x" * 70))
    assert session.feed_client(big) == [(big, None)]
    # unknown server packet types are ignored, not errors
    assert SftpSession().feed_server(pkt(150, 1, 2)) == []


def test_tracking_is_bounded() -> None:
    session = SftpSession()
    n = 10_000 + 5
    records: list[dict[str, object]] = []
    for batch in (range(5_000), range(5_000, n)):  # never more than 10,000 requests waiting
        requests = b"".join(pkt(OPEN, i, s(f"f{i}"), 1, NO_ATTRS) for i in batch)
        assert len(session.feed_client(requests)) == len(batch)
        records += session.feed_server(b"".join(pkt(HANDLE, i, s(f"h{i}")) for i in batch))
    assert [r["status"] for r in records if r["op"] == "open"] == ["ok"] * n
    # the 5 oldest handles made room: reported at once as unclosed
    dropped = [r for r in records if r["op"] == "close"]
    assert [r["path"] for r in dropped] == [f"f{i}" for i in range(5)]
    assert all(r["status"] == "unclosed" for r in dropped)
    assert session.dropped == 5
    # a write op on a dropped handle is on an unknown handle, not a harmless one
    [(_, op)] = session.feed_client(pkt(FSETSTAT, n, s("h0"), NO_ATTRS))
    assert op == {"id": n, "op": "fsetstat", "path": "", "write": True, "unknown_handle": True}
    [(_, op)] = session.feed_client(pkt(FSETSTAT, n + 1, s("h5"), NO_ATTRS))
    assert op == {"id": n + 1, "op": "fsetstat", "path": "f5", "write": True}
    assert len(session.finish()) == 10_002
    # 10,000 requests may wait for replies, pass-through ones included; one more is an error
    # (forgetting one would let its id be reused unnoticed)
    session = SftpSession()
    session.feed_client(b"".join(pkt(MKDIR, i, s(f"d{i}"), NO_ATTRS) for i in range(5_000)))
    session.feed_client(b"".join(pkt(STAT, i, s(f"d{i}")) for i in range(5_000, 10_000)))
    with pytest.raises(ValueError, match=r"^more than 10000 sftp requests pending$"):
        session.feed_client(pkt(STAT, 10_000, s("x")))
    session = SftpSession()
    session.feed_client(b"".join(pkt(MKDIR, i, s(f"d{i}"), NO_ATTRS) for i in range(10_000)))
    assert session.feed_server(status(0, 0)) == [{"op": "mkdir", "path": "d0", "status": "ok"}]
    session.feed_client(pkt(MKDIR, 10_000, s("x"), NO_ATTRS))
    assert len(session.finish()) == 10_000


# --- the two rules that keep a decision's path the server's ---------------------------------------


def test_a_pending_request_id_cannot_be_reused() -> None:
    # the attack: two OPENs with id 7; the first HANDLE reply (for /etc/canary) would be taken for
    # /tmp/harmless, and a FSETSTAT on that handle judged against /tmp/harmless
    session = SftpSession()
    [(_, op)] = session.feed_client(pkt(OPEN, 7, s("/etc/canary"), 1, NO_ATTRS))
    assert op is not None and op["path"] == "/etc/canary"
    message = "^sftp request id 7 reused while a request with that id is pending$"
    with pytest.raises(ValueError, match=message):
        session.feed_client(pkt(OPEN, 7, s("/tmp/harmless"), 1, NO_ATTRS))
    with pytest.raises(ValueError, match=message):  # sticky, both directions
        session.feed_server(pkt(HANDLE, 7, s("h")))
    # the same within one read, and with a pass-through request first
    for first in (
        pkt(OPEN, 7, s("/etc/canary"), 1, NO_ATTRS),
        pkt(STAT, 7, s("/x")),
        pkt(READ, 7, s("h"), u64(0), 9),
    ):
        with pytest.raises(ValueError, match=message):
            SftpSession().feed_client(first + pkt(OPEN, 7, s("/tmp/harmless"), 1, NO_ATTRS))
    # answered or refused, an id is free again; the handle keeps its own path
    session = SftpSession()
    session.feed_client(pkt(OPEN, 7, s("/etc/canary"), 1, NO_ATTRS))
    session.feed_server(pkt(HANDLE, 7, s("h")))
    session.feed_client(pkt(OPEN, 7, s("/tmp/harmless"), 1, NO_ATTRS))
    session.refuse(7, "no")
    [(_, op)] = session.feed_client(pkt(FSETSTAT, 7, s("h"), NO_ATTRS))
    assert op == {"id": 7, "op": "fsetstat", "path": "/etc/canary", "write": True}


def test_fsetstat_on_an_unknown_handle_is_flagged() -> None:
    session = SftpSession()
    session.feed_client(pkt(OPEN, 1, s("/etc/canary"), 1, NO_ATTRS))
    session.feed_server(pkt(HANDLE, 1, s("h1")))
    [(_, op)] = session.feed_client(pkt(FSETSTAT, 2, s("h1"), NO_ATTRS))
    assert op == {"id": 2, "op": "fsetstat", "path": "/etc/canary", "write": True}
    # never returned by the server
    [(_, op)] = session.feed_client(pkt(FSETSTAT, 3, s("h9"), NO_ATTRS))
    assert op == {"id": 3, "op": "fsetstat", "path": "", "write": True, "unknown_handle": True}
    # closed
    session.feed_client(pkt(CLOSE, 4, s("h1")))
    session.feed_server(status(2, 0) + status(3, 0) + status(4, 0))
    [(_, op)] = session.feed_client(pkt(FSETSTAT, 5, s("h1"), NO_ATTRS))
    assert op == {"id": 5, "op": "fsetstat", "path": "", "write": True, "unknown_handle": True}
    assert session.feed_server(status(5, 0)) == [{"op": "fsetstat", "path": "", "status": "ok"}]


# --- the real OpenSSH sftp and sftp-server -------------------------------------------------------

SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
TEE = Path(__file__).parent / "_support" / "sftp_tee.py"
needs_sftp = pytest.mark.skipif(
    not SFTP_SERVER.exists() or shutil.which("sftp") is None, reason="OpenSSH sftp and sftp-server needed"
)


def run_sftp(tmp_path: Path, batch: str, deny: list[str]) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    """Run ``sftp -b`` against the real sftp-server through the tee relay."""
    out, srv = tmp_path / "out", tmp_path / "srv"
    out.mkdir()
    srv.mkdir()
    wrapper = tmp_path / "wrap.sh"
    deny_args = " ".join(f"--deny '{g}'" for g in deny)
    wrapper.write_text(
        f"#!/bin/sh\ncd '{srv}' && exec '{sys.executable}' '{TEE}' '{out}' '{SFTP_SERVER}' {deny_args}\n"
    )
    wrapper.chmod(0o755)
    (tmp_path / "batch").write_text(batch)
    proc = subprocess.run(
        ["sftp", "-b", str(tmp_path / "batch"), "-D", str(wrapper)],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc, out


@needs_sftp
def test_real_sftp_session(tmp_path: Path) -> None:
    payload = os.urandom(300_000)  # several READ/WRITE round trips of 32 KiB
    (tmp_path / "local.bin").write_bytes(payload)
    batch = (
        "put local.bin up.bin\n"
        "get up.bin back.bin\n"
        "mkdir d\n"
        "rename up.bin d/moved.bin\n"
        "-rm d/secret.txt\n"
        "ls d\n"
        "rm d/moved.bin\n"
        "rmdir d\n"
        "-put local.bin secret.txt\n"
    )
    proc, out = run_sftp(tmp_path, batch, deny=["*secret*"])
    assert proc.returncode == 0, proc.stderr
    assert b"Permission denied" in proc.stderr
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert not (tmp_path / "srv" / "secret.txt").exists()
    result = json.loads((out / "result.json").read_text())
    assert result["version"] == 3
    srv = str(tmp_path / "srv")
    records = [
        {k: (v.removeprefix(srv + "/") if isinstance(v, str) else v) for k, v in r.items()}
        for r in result["records"]
    ]
    n = len(payload)
    assert records == [
        {"op": "open", "path": "up.bin", "flags": ["write", "create", "truncate"], "status": "ok"},
        {"op": "close", "path": "up.bin", "bytes_read": 0, "bytes_written": n, "status": "ok"},
        {"op": "open", "path": "up.bin", "flags": ["read"], "status": "ok"},
        {"op": "close", "path": "up.bin", "bytes_read": n, "bytes_written": 0, "status": "ok"},
        {"op": "mkdir", "path": "d", "status": "ok"},
        {"op": "rename", "path": "up.bin", "target": "d/moved.bin", "status": "ok"},
        {"op": "remove", "path": "d/secret.txt", "status": "refused"},
        {"op": "opendir", "path": "d/", "status": "ok"},  # sftp's ls
        {"op": "remove", "path": "d/moved.bin", "status": "ok"},
        {"op": "rmdir", "path": "d", "status": "ok"},
        {"op": "open", "path": "secret.txt", "flags": ["write", "create", "truncate"], "status": "refused"},
    ]


def read_transcript(path: Path) -> list[tuple[str, bytes]]:
    raw, out, pos = path.read_bytes(), [], 0
    while pos < len(raw):
        (length,) = struct.unpack_from("!I", raw, pos + 1)
        out.append((chr(raw[pos]), raw[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out


@needs_sftp
def test_real_sftp_streams_at_every_split(tmp_path: Path) -> None:
    (tmp_path / "local.bin").write_bytes(os.urandom(3000))
    proc, out = run_sftp(
        tmp_path, "put local.bin a\nmkdir d\nrename a d/b\nget d/b c\nrm d/b\nrmdir d\n", deny=[]
    )
    assert proc.returncode == 0, proc.stderr
    transcript = read_transcript(out / "transcript.bin")
    client = b"".join(data for d, data in transcript if d == "c")
    expected = json.loads((out / "result.json").read_text())["records"]
    assert [r["op"] for r in expected] == [
        "open",
        "close",
        "mkdir",
        "rename",
        "open",
        "close",
        "remove",
        "rmdir",
    ]
    assert [r["bytes_written"] + r["bytes_read"] for r in expected if r["op"] == "close"] == [3000, 3000]

    def replay(cut: int) -> list[dict[str, object]]:
        """The transcript in order, the read holding offset ``cut`` split there."""
        session = SftpSession()
        forwarded, records, offset = b"", [], 0
        for direction, data in transcript:
            at = cut - offset
            offset += len(data)
            for part in [data[:at], data[at:]] if 0 <= at <= len(data) else [data]:
                if direction == "c":
                    forwarded += b"".join(chunk for chunk, _ in session.feed_client(part))
                else:
                    records += session.feed_server(part)
        assert forwarded == client
        return records + session.finish()

    total = sum(len(data) for _, data in transcript)
    for cut in range(total + 1):
        assert replay(cut) == expected, cut


# --- scp (legacy protocol) -----------------------------------------------------------------------

needs_scp = pytest.mark.skipif(shutil.which("scp") is None, reason="OpenSSH scp needed")


def scp_feed(data: bytes, step: int | None = None) -> list[dict[str, object]]:
    stream = ScpStream()
    records: list[dict[str, object]] = []
    if step is None:
        records += stream.feed(data)
    else:
        for i in range(0, len(data), step):
            records += stream.feed(data[i : i + step])
    return records + stream.finish()


def test_scp_records_and_errors() -> None:
    data = b"\0D0755 0 dir\nT1 0 2 0\nC0644 3 a\nabc\0E\nC0600 2 b\nxy\0\x02scp: fatal\n"
    expected = [
        {"op": "mkdir", "path": "dir", "mode": "0755"},
        {"op": "file", "path": "dir/a", "mode": "0644", "size": 3, "status": "ok"},
        {"op": "file", "path": "b", "mode": "0600", "size": 2, "status": "ok"},
        {"op": "error", "message": "scp: fatal"},
    ]
    assert scp_feed(data) == expected
    assert scp_feed(data, 1) == expected
    for cut in range(len(data) + 1):
        stream = ScpStream()
        assert stream.feed(data[:cut]) + stream.feed(data[cut:]) + stream.finish() == expected
    stream = ScpStream()
    assert stream.feed(b"C0644 10 f\n12345") == []
    assert stream.finish() == [
        {"op": "file", "path": "f", "mode": "0644", "size": 10, "status": "incomplete", "transferred": 5}
    ]
    stream = ScpStream()
    assert stream.feed(b"garbage\nC0644 1 f\nx") == [
        {"op": "error", "message": 'scp protocol violation: unexpected control line "garbage"'}
    ]
    assert stream.stopped
    assert stream.feed(b"C0644 1 f\nx") == []
    stream = ScpStream()
    assert [r["op"] for r in stream.feed(b"C" * 5000)] == ["error"]


@needs_scp
def test_real_scp_source_stream(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello")
    (src / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    (src / "sub" / "empty").write_bytes(b"")
    # scp -f is the server side of a download: its stdout is the server->client stream
    proc = subprocess.run(
        ["scp", "-p", "-r", "-f", "src"],
        cwd=tmp_path,
        input=b"\0" * 64,
        capture_output=True,
        timeout=30,
        check=True,
    )
    data = proc.stdout
    assert data.startswith(b"T")
    expected: list[dict[str, object]] = sorted(
        [
            {"op": "mkdir", "path": "src", "mode": "0755"},
            {"op": "file", "path": "src/a.txt", "mode": "0644", "size": 5, "status": "ok"},
            {"op": "mkdir", "path": "src/sub", "mode": "0755"},
            {"op": "file", "path": "src/sub/b.bin", "mode": "0644", "size": 70_000, "status": "ok"},
            {"op": "file", "path": "src/sub/empty", "mode": "0644", "size": 0, "status": "ok"},
        ],
        key=lambda r: str(r["path"]),
    )
    for step in (None, 1, 7, 4096):
        assert sorted(scp_feed(data, step), key=lambda r: str(r["path"])) == expected
    # cut short: the download ends inside b.bin
    cut = data.index(b"b.bin\n") + 6 + 1000
    records = scp_feed(data[:cut])
    assert records[-1] == {
        "op": "file", "path": "src/sub/b.bin", "mode": "0644", "size": 70_000, "status": "incomplete",
        "transferred": 1000,
    }  # fmt: skip


@needs_scp
def test_real_scp_sink_accepts_the_upload_stream(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    blob = os.urandom(10_000)
    upload = (
        b"D0750 0 top\n"
        + b"C0640 5 one.txt\nhello\0"
        + b"T1700000000 0 1700000000 0\nD0700 0 inner\n"
        + b"C0600 "
        + str(len(blob)).encode()
        + b" blob.bin\n"
        + blob
        + b"\0E\nE\n"
    )
    # scp -t is the server side of an upload: the stream is its stdin
    proc = subprocess.run(
        ["scp", "-r", "-t", str(dest)], input=upload, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout) == {0}  # only acks came back
    assert (dest / "top" / "one.txt").read_bytes() == b"hello"
    assert (dest / "top" / "inner" / "blob.bin").read_bytes() == blob
    assert scp_feed(upload) == [
        {"op": "mkdir", "path": "top", "mode": "0750"},
        {"op": "file", "path": "top/one.txt", "mode": "0640", "size": 5, "status": "ok"},
        {"op": "mkdir", "path": "top/inner", "mode": "0700"},
        {"op": "file", "path": "top/inner/blob.bin", "mode": "0600", "size": len(blob), "status": "ok"},
    ]
