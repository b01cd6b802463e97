"""Adversarial regression tests for the SSH gateway: confirmed policy, audit and masking gaps.

Real OpenSSH clients (and a raw asyncssh SFTP client for hand-made packets) -> the REAL gateway ->
the real test sshd. Each test states the attack, what happens today and what should happen. They
fail until the gaps are fixed.
"""

from __future__ import annotations

import asyncio
import re
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests._support.pg import TestPg
from tests._support.procs import wait_until
from tests._support.sshd import Sshd
from tests._support.sshgw import SshGateway

CARD_DIGITS = "4111111111111111"

# SFTP v3 packet types
_INIT, _OPEN, _FSETSTAT = 1, 3, 10
_FXP_STATUS, _FXP_HANDLE = 101, 102
_READ = 0x01
_ATTR_PERMISSIONS = 0x04


@pytest.fixture(scope="module")
def base(sshd: Sshd) -> Path:
    path = sshd.workdir / "adversarial"
    for sub in ("locked", "files", "ro", "outside", "pub", "victims"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "secret.txt").write_text("TOP-SECRET-CONTENT\n")
    (path / "pub" / "a.log").write_text("public log line\n")
    return path


def _policy(base: Path) -> list[dict[str, Any]]:
    return [
        {
            "name": "dev",
            "subjects": ["group:dev"],
            "connections": ["bankhost"],
            "allow": ["shell", "exec", "file-read", "file-write"],
            "deny": ["destructive", "exec:rm -rf *", f"file-write:{base}/locked/*"],
        },
        {
            # transfers only, and only under files/ (read-only under ro/): no exec at all
            "name": "files",
            "subjects": ["group:files"],
            "connections": ["bankhost"],
            "allow": [
                f"file-read:{base}/files/*",
                f"file-write:{base}/files/*",
                f"file-read:{base}/ro/*",
            ],
        },
        {
            # commands but no interactive shells
            "name": "noshell",
            "subjects": ["group:noshell"],
            "connections": ["bankhost"],
            "allow": ["exec"],
            "deny": ["shell"],
        },
        {
            # docs/SSH.md's "agents" shape: exactly the listed command, nothing else
            "name": "agents",
            "subjects": ["group:agents"],
            "connections": ["bankhost"],
            "allow": [f"exec:cat {base}/pub/*"],
        },
        {"name": "admin", "subjects": ["user:admin"], "connections": ["*"], "allow": ["read"]},
    ]


@pytest.fixture(scope="module")
def agw(tmp_path_factory: pytest.TempPathFactory, pg: TestPg, sshd: Sshd, base: Path) -> Iterator[SshGateway]:
    gw = SshGateway(tmp_path_factory.mktemp("sshadv"), pg, sshd, policy=_policy(base)).start()
    try:
        for person, group in (("frank", "files"), ("nora", "noshell"), ("agent", "agents")):
            _register(gw, person, group)
        yield gw
    finally:
        gw.stop()


def _register(gw: SshGateway, person: str, group: str) -> Path:
    """Like SshGateway.key_of, with a group of this module's policies."""
    path = gw.workdir / f"id_{person}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", person, "-f", str(path)], check=True, timeout=30
    )
    admin = gw.gw.token("admin", ())
    res = gw.gw.run_cli(
        "ssh-keys", "add", "--subject", person, "--groups", group, f"{path}.pub", "--token", admin
    )
    assert res.returncode == 0, res.stderr
    gw.keys[person] = path
    return path


def _session_of(gw: SshGateway, marker: str) -> str:
    found = [e for e in gw.wait_events("ssh_request") if marker in str(e.get("command") or "")]
    assert found, f"no ssh_request with {marker!r}"
    return str(found[-1]["_session"])


# -- SFTP: FSETSTAT decided on a path the gateway mis-tracked (reused request ids) ------------------------
class _Sftp(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.buf = b""
        self.more = asyncio.Event()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if datatype is None:
            self.buf += data
        self.more.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.more.set()


def _s(b: bytes | str) -> bytes:
    raw = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(raw)) + raw


def _pkt(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


async def _replies(sess: _Sftp, n: int, within: float = 10.0) -> list[bytes]:
    out: list[bytes] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while len(out) < n and loop.time() < end:
        while len(sess.buf) >= 4 and len(sess.buf) >= 4 + struct.unpack(">I", sess.buf[:4])[0]:
            size = struct.unpack(">I", sess.buf[:4])[0]
            out.append(sess.buf[4 : 4 + size])
            sess.buf = sess.buf[4 + size :]
        if len(out) >= n:
            break
        sess.more.clear()
        try:
            async with asyncio.timeout(max(0.01, end - loop.time())):
                await sess.more.wait()
        except TimeoutError:
            break
    return out


async def _fsetstat_via_reused_id(port: int, key: Path, locked: Path, harmless: Path) -> bytes:
    conn = await asyncssh.connect(
        "127.0.0.1",
        port,
        username="alice",
        client_keys=[asyncssh.read_private_key(str(key))],
        known_hosts=None,
        agent_path=None,
    )
    try:
        chan, session = await conn.create_session(_Sftp, subsystem="sftp", encoding=None)
        assert isinstance(session, _Sftp)
        sess = session
        chan.write(_pkt(_INIT, struct.pack(">I", 3)))
        assert len(await _replies(sess, 1)) == 1
        # two OPENs for reading with the same request id: the reply to the first (the locked file) is
        # matched to the second request's path, so its handle is tracked as the harmless file's
        read_flags = struct.pack(">II", _READ, 0)
        chan.write(
            _pkt(_OPEN, struct.pack(">I", 7) + _s(str(locked)) + read_flags)
            + _pkt(_OPEN, struct.pack(">I", 7) + _s(str(harmless)) + read_flags)
        )
        opens = await _replies(sess, 2)
        if len(opens) < 2 or any(r[0] != _FXP_HANDLE for r in opens):
            chan.close()
            return b"".join(opens)  # the gateway ended the channel at the reused id (a protocol violation)
        handle = opens[0][9:]  # type, id, string length, handle
        chan.write(
            _pkt(_FSETSTAT, struct.pack(">I", 8) + _s(handle) + struct.pack(">II", _ATTR_PERMISSIONS, 0o666))
        )
        (reply,) = await _replies(sess, 1)
        chan.close()
        return reply
    finally:
        conn.close()


def test_sftp_fsetstat_cannot_chmod_a_write_denied_file_through_a_reused_request_id(
    agw: SshGateway, base: Path
) -> None:
    """``deny = ["file-write:LOCKED/*"]``; reading LOCKED files is allowed. FSETSTAT is decided on the
    path the core tracked for the handle, and the core matches replies to requests by id, so two OPENs
    with the same id get the first handle tracked under the second's path: FSETSTAT (chmod 0666) of the
    locked file is then decided as a write to the harmless one and runs. Expected: refused."""
    locked = base / "locked" / "canary"
    locked.write_text("canary\n")
    locked.chmod(0o600)
    harmless = base / "files" / "harmless"
    harmless.write_text("x\n")
    reply = asyncio.run(_fsetstat_via_reused_id(agw.port, agw.key_of("alice"), locked, harmless))
    mode = stat.S_IMODE(locked.stat().st_mode)
    assert mode == 0o600, f"the locked file was chmodded to {oct(mode)} (reply {reply!r})"
    # either the channel ended at the reused id, or the chmod was refused
    ended = agw.wait_events("ssh_protocol_error", protocol="sftp")
    assert ended or (reply[:1] == bytes([_FXP_STATUS]) and struct.unpack(">I", reply[5:9])[0] != 0)
    assert "reused" in ended[-1]["error"]


# -- rsync --server: options the transfer classification never looks at -----------------------------------
def test_rsync_server_log_file_cannot_write_outside_the_allowed_paths(agw: SshGateway, base: Path) -> None:
    """A transfers-only policy (file-write under files/ only). ``rsync --server --log-file=OUTSIDE . files/x``
    is classed as an rsync upload to files/x (``file-write:files/*``, no ``exec``), so it runs and rsync
    writes OUTSIDE. Expected: an rsync command with options beyond what rsync clients send (or any
    option naming a path) is refused or carries ``exec``."""
    log = base / "outside" / "rsync.log"
    log.unlink(missing_ok=True)
    cmd = f"rsync --server --log-file={log} -vlogDtpre.iLsfxC . {base}/files/x"
    res = agw.ssh("frank", cmd, stdin=subprocess.DEVNULL, timeout=30)
    assert not log.exists(), f"rsync wrote {log} outside the allowed paths"
    assert res.returncode == 126, (res.returncode, res.stderr[-300:])


def test_rsync_server_daemon_cannot_run_commands_under_a_transfers_only_policy(
    agw: SshGateway, base: Path
) -> None:
    """``rsync --server --daemon --config=FILE . files/x`` is classed as an upload to files/x, but it is an
    rsync daemon whose config (uploaded by the same person) may say ``pre-xfer exec = ANY COMMAND``:
    arbitrary commands for someone allowed no ``exec`` at all. Expected: refused (126), nothing run."""
    marker = base / "outside" / "PWNED"
    marker.unlink(missing_ok=True)
    conf = base / "files" / "rsyncd.conf"
    conf.write_text(f"use chroot = no\n[m]\npath = {base}/files\npre-xfer exec = touch {marker}\n")
    cmd = f"rsync --server --daemon --config={conf} . {base}/files/x"
    res = agw.ssh("frank", cmd, input=b"@RSYNCD: 31.0\nm\n", timeout=30)
    assert not marker.exists(), "rsync daemon mode ran the config's pre-xfer exec command"
    assert res.returncode == 126, (res.returncode, res.stderr[-300:])


def test_rsync_remove_source_files_is_not_a_read(agw: SshGateway, base: Path, tmp_path: Path) -> None:
    """ro/ is read-only for the transfers policy. ``rsync --remove-source-files host:ro/f .`` is classed
    as a read of ro/f (``--sender``) and deletes ro/f on the host. Expected: refused or a write."""
    victim = base / "ro" / "keep.txt"
    victim.write_text("must survive\n")
    res = subprocess.run(
        [
            "rsync",
            "--remove-source-files",
            "-e",
            agw.rsync_e("frank"),
            agw.remote("frank", victim),
            str(tmp_path),
        ],
        capture_output=True,
        timeout=60,
    )
    assert victim.exists(), f"a read-only grant deleted {victim} (rsync rc {res.returncode})"


# -- exec classification: deny rules bypassed by plain shell syntax -----------------------------------------
_EVASIONS = {
    "leading-redirection": ">/dev/null rm -rf {d}",
    "leading-input-redirection": "</dev/null rm -rf {d}",
    "rm -vrf": "rm -vrf {d}",
    "abbreviated --recursive": "rm --recur {d}",
    "function keyword": "function f {{ rm -rf {d}; }}; f",
    "here-string into a shell": "bash <<< 'rm -rf {d}'",
    "brace expansion": "{{rm,-rf,{d}}}",
}


@pytest.mark.parametrize("template", list(_EVASIONS.values()), ids=list(_EVASIONS))
def test_destructive_deny_is_not_bypassed_by_shell_syntax(agw: SshGateway, base: Path, template: str) -> None:
    """``deny = ["destructive", "exec:rm -rf *"]``: each of these runs ``rm -rf DIR`` in bash (the
    upstream login shell) yet today carries neither class. Expected: 126 and DIR kept."""
    victim = base / "victims" / re.sub(r"\W+", "_", template)[:40]
    (victim / "sub").mkdir(parents=True, exist_ok=True)
    res = agw.ssh("alice", template.format(d=victim), stdin=subprocess.DEVNULL, timeout=30)
    assert victim.exists(), f"deleted through the gateway: {template.format(d=victim)!r}"
    assert res.returncode == 126, res.stderr


# -- `shell` denied, but an exec of a shell is an interactive shell ---------------------------------------
@pytest.mark.parametrize("command", ["sh", "bash -s", "bash --norc -i"])
def test_exec_of_a_bare_shell_counts_as_a_shell(agw: SshGateway, command: str) -> None:
    """``allow = ["exec"], deny = ["shell"]``: ``ssh host sh`` (script on stdin) or ``ssh -t host bash -i``
    is a shell in all but name, classed ``exec`` only, and (with a pty) its typed lines are not even
    recorded as ``command_line`` events (exec channels never are). Expected: also class ``shell``."""
    res = agw.ssh("nora", command, input=b"echo SHELL_RAN\nexit\n", timeout=30)
    assert b"SHELL_RAN" not in res.stdout
    assert res.returncode == 126, res.stderr


# -- exec:GLOB allow lists: `*` spans extra arguments ------------------------------------------------------
def test_exec_glob_allow_list_does_not_read_other_files(agw: SshGateway, base: Path) -> None:
    """docs/SSH.md's agents policy allows ``exec:cat /var/log/*`` and calls exact exec globs "a hard
    boundary"; ``*`` crosses spaces, so ``cat /var/log/x /etc/shadow`` is covered. Here:
    ``allow = ["exec:cat PUB/*"]`` prints a file outside PUB. Expected: refused (or the docs say so and
    recommend globs that cannot take more arguments)."""
    res = agw.ssh("agent", f"cat {base}/pub/a.log {base}/secret.txt", stdin=subprocess.DEVNULL, timeout=30)
    assert b"TOP-SECRET-CONTENT" not in res.stdout
    assert res.returncode == 126, res.stderr


# -- masking: the audit store -------------------------------------------------------------------------------
def test_exec_recording_masks_a_card_written_digit_by_digit(agw: SshGateway) -> None:
    """An exec without a pty records "exactly the masked bytes its client got"; output slower than
    ``idle_flush`` is flushed unmasked, so the recording in the audit store holds the first 15 digits
    of the card (the 16th is its Luhn check digit). A pty's recording masks on its own and is clean.
    Expected: the exec recording masks independently of the live view, as the pty one does."""
    marker = "digitbydigit"
    digits = " ".join(CARD_DIGITS)
    cmd = f": {marker}; for d in {digits}; do printf $d; sleep 0.1; done; echo"
    res = agw.ssh("alice", cmd, stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 0, res.stderr
    sid = _session_of(agw, marker)
    wait_until(lambda: bool(agw.events("terminal_end", session_id=sid)), 15, what="terminal_end")
    frames: list[str] = []
    for e in agw.events("terminal", session_id=sid):
        frames.extend(f[2] for f in e["frames"] if f[1] == "o")
    recorded = re.sub(r"\D", "", "".join(frames))
    assert CARD_DIGITS[:12] not in recorded, f"recorded output digits: {recorded}"


def test_transfer_paths_are_masked_like_commands(agw: SshGateway, base: Path, tmp_path: Path) -> None:
    """The exec command is masked in ``ssh_request``/``ssh_exec`` (``scp -f /x/************1111.txt``),
    but the same path is stored raw in their ``transfer.paths`` and in ``ssh_file`` records (scp and
    SFTP). Expected: no event holds the raw card number."""
    src = base / "files" / f"{CARD_DIGITS}.txt"
    src.write_text("hello\n")
    for legacy in (True, False):
        res = subprocess.run(
            agw.scp_cmd("alice", agw.remote("alice", src), str(tmp_path / f"dl{legacy}"), legacy=legacy),
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
    agw.wait_events("ssh_file", op="close", count=1)
    leaked = [
        (e["_kind"], {k: v for k, v in e.items() if not k.startswith("_")})
        for e in agw.events()
        if CARD_DIGITS in repr(e)
    ]
    assert not leaked, leaked
