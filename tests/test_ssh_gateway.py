"""The SSH gateway end to end: real OpenSSH clients -> the gateway -> a real sshd.

Exec, pty shells, scp (SFTP and legacy), sftp batches and rsync go through unchanged; output is masked
(also a card number split at a read boundary), transfers stay byte-exact, commands are under policy
and approval, and every session is recorded.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.pg import TestPg
from tests._support.procs import wait_until
from tests._support.sshd import Sshd
from tests._support.sshgw import SshGateway
from tests.test_pg_auth import _signed

CARD = "4111 1111 1111 1111"
CARD2 = "5500005555555559"
EMAIL = "carol.danvers@bank.example"


def _pii_file(path: Path) -> bytes:
    """A text file with card numbers, one of them straddling each 32 KiB boundary (SSH packets and
    reads split there) and a 64 KiB one."""
    lines: list[bytes] = []
    size = 0
    for boundary in (32768, 65536, 98304, 131072):
        pad = boundary - size - 8  # the card starts 8 bytes before the boundary
        lines.append(b"x" * (pad - 1) + b"\n")
        size += pad
        line = f"{CARD} card\n".encode()
        lines.append(line)
        size += len(line)
    lines.append(f"{CARD2} and {EMAIL}\nend\n".encode())
    data = b"".join(lines)
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def sgw(tmp_path_factory: pytest.TempPathFactory, pg: TestPg, sshd: Sshd) -> Iterator[SshGateway]:
    gw = SshGateway(tmp_path_factory.mktemp("sshgw"), pg, sshd).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def pii(sshd: Sshd) -> tuple[Path, bytes]:
    path = sshd.workdir / "cards.txt"
    return path, _pii_file(path)


def test_exec_runs_and_exit_status_passes_through(sgw: SshGateway) -> None:
    res = sgw.ssh("alice", "echo hello; echo oops >&2; exit 3")
    assert res.stdout == b"hello\n"
    assert b"oops" in res.stderr
    assert res.returncode == 3


def test_exec_output_is_masked_even_split_at_read_boundaries(
    sgw: SshGateway, pii: tuple[Path, bytes]
) -> None:
    path, raw = pii
    res = sgw.ssh("alice", f"cat {path}")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert CARD.encode() not in out and CARD.replace(" ", "").encode() not in out
    assert CARD2.encode() not in out and EMAIL.encode() not in out
    assert out.count(b" card\n") == 4  # every line arrived
    assert out.count(b"1111 card\n") == 4  # last four kept (style last4)
    assert len(out.splitlines()) == len(raw.splitlines())


def test_transfers_are_byte_exact(sgw: SshGateway, pii: tuple[Path, bytes], tmp_path: Path) -> None:
    path, raw = pii
    want = hashlib.sha256(raw).hexdigest()
    for legacy in (False, True):
        dest = tmp_path / f"scp-{legacy}.txt"
        res = subprocess.run(
            sgw.scp_cmd("alice", sgw.remote("alice", path), str(dest), legacy=legacy),
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == want
    batch = tmp_path / "batch"
    got = tmp_path / "sftp.txt"
    batch.write_text(f"get {path} {got}\n")
    res = subprocess.run(sgw.sftp_cmd("alice", batch), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(got.read_bytes()).hexdigest() == want
    rs = tmp_path / "rsync.txt"
    res = subprocess.run(
        ["rsync", "-e", sgw.rsync_e("alice"), sgw.remote("alice", path), str(rs)],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(rs.read_bytes()).hexdigest() == want


def test_uploads_are_byte_exact_and_audited(sgw: SshGateway, sshd: Sshd, tmp_path: Path) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(300_000) + f"{CARD}\n".encode())
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    for i, legacy in enumerate((False, True)):
        dest = sshd.workdir / f"up-{i}.bin"
        res = subprocess.run(
            sgw.scp_cmd("alice", str(src), sgw.remote("alice", dest), legacy=legacy),
            capture_output=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == want
    dest = sshd.workdir / "up-rsync.bin"
    res = subprocess.run(
        ["rsync", "-e", sgw.rsync_e("alice"), str(src), sgw.remote("alice", dest)],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == want
    # SFTP (scp's default mode): the open for writing and the bytes written on its close
    closes = sgw.wait_events("ssh_file", op="close", path=str(sshd.workdir / "up-0.bin"))
    assert closes[0]["bytes_written"] == src.stat().st_size
    # legacy scp: the file record from the protocol itself
    files = sgw.wait_events("ssh_file", protocol="scp", op="file")
    assert any(f["size"] == src.stat().st_size for f in files)
    # file content never reaches the store
    db = b"".join(p.read_bytes() for p in sorted(sgw.gw.data_dir.glob("audit.db*")))
    assert src.read_bytes()[:64] not in db


def test_sftp_operations_are_recorded(sgw: SshGateway, sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "f.txt"
    local.write_bytes(b"hello sftp\n" * 100)
    base = sshd.workdir / "sftp-ops"
    batch = tmp_path / "batch"
    batch.write_text(
        "\n".join(
            [
                f"mkdir {base}",
                f"put {local} {base}/a.txt",
                f"rename {base}/a.txt {base}/b.txt",
                f"get {base}/b.txt {tmp_path}/back.txt",
                f"rm {base}/b.txt",
                f"rmdir {base}",
            ]
        )
        + "\n"
    )
    res = subprocess.run(sgw.sftp_cmd("alice", batch), capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "back.txt").read_bytes() == local.read_bytes()
    sgw.wait_events("ssh_file", op="rmdir", path=str(base))
    ops = [
        (e["op"], e["path"], e["status"])
        for e in sgw.events("ssh_file")
        if e["protocol"] == "sftp" and str(e.get("path", "")).startswith(str(base))
    ]
    assert ("mkdir", str(base), "ok") in ops
    assert ("rename", f"{base}/a.txt", "ok") in ops
    assert ("remove", f"{base}/b.txt", "ok") in ops
    assert ("rmdir", str(base), "ok") in ops
    reads = [
        e
        for e in sgw.events("ssh_file")
        if e.get("op") == "close" and e.get("path") == f"{base}/b.txt" and e.get("bytes_read")
    ]
    assert reads and reads[0]["bytes_read"] == local.stat().st_size


def test_policy_denies_sftp_writes_by_path_glob(sgw: SshGateway, tmp_path: Path) -> None:
    local = tmp_path / "evil"
    local.write_text("x\n")
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} /etc/hoopgw-test-evil\n")
    res = subprocess.run(sgw.sftp_cmd("alice", batch), capture_output=True, timeout=60)
    assert res.returncode != 0
    assert b"ermission denied" in res.stderr
    assert not Path("/etc/hoopgw-test-evil").exists()
    sgw.wait_events("ssh_file", status="refused", path="/etc/hoopgw-test-evil")


def test_denied_exec_gets_126_and_a_clear_message(sgw: SshGateway, sshd: Sshd) -> None:
    victim = sshd.workdir / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "keep").write_text("x")
    for command in (f"rm -rf {victim}", f"sh -c 'true && /bin/rm -fr {victim}'", "echo forbidden-thing"):
        res = sgw.ssh("alice", command)
        assert res.returncode == 126, (command, res)
        assert b"hoopgw" in res.stderr and b"denies" in res.stderr, res.stderr
        assert res.stdout == b""
    assert (victim / "keep").exists()
    denied = sgw.wait_events("ssh_request", 3, verdict="deny")
    assert any("destructive" in e["classes"] for e in denied)


def test_held_exec_runs_once_approved(sgw: SshGateway, sshd: Sshd) -> None:
    target = sshd.workdir / "approval-granted"
    proc = subprocess.Popen(
        sgw.ssh_cmd("alice", f"touch {target}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        requests = sgw.wait_events("approval_requested", 1, timeout=20, command=f"touch {target}")
        rid = requests[0]["request_id"]
        assert not target.exists()
        # the requester cannot approve their own command
        own = sgw.gw.run_cli("approvals", "approve", rid, "--token", sgw.gw.token("alice", ("dev",)))
        assert own.returncode != 0
        res = sgw.gw.run_cli("approvals", "approve", rid, "--token", sgw.gw.token("bob", ("ops",)))
        assert res.returncode == 0, res.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert b"held for approval" in err
    assert target.exists()


def test_denied_approval_refuses_the_command(sgw: SshGateway, sshd: Sshd) -> None:
    target = sshd.workdir / "approval-denied"
    proc = subprocess.Popen(
        sgw.ssh_cmd("alice", f"touch {target}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        rid = sgw.wait_events("approval_requested", 1, timeout=20, command=f"touch {target}")[0]["request_id"]
        res = sgw.gw.run_cli(
            "approvals", "deny", rid, "--reason", "not today", "--token", sgw.gw.token("bob", ("ops",))
        )
        assert res.returncode == 0, res.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 126
    assert b"denied" in err
    assert not target.exists()


def test_a_held_sftp_upload_waits_for_its_approval(sgw: SshGateway, sshd: Sshd, tmp_path: Path) -> None:
    local = tmp_path / "report.csv"
    local.write_bytes(b"a,b\n1,2\n")
    dest = sshd.workdir / "held-upload.csv"
    batch = tmp_path / "batch"
    batch.write_text(f"put {local} {dest}\n")
    proc = subprocess.Popen(sgw.sftp_cmd("alice", batch), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rid = sgw.wait_events(
            "approval_requested", 1, timeout=20, command=f"sftp open {dest} (write,create,truncate)"
        )[0]["request_id"]
        assert not dest.exists()
        res = sgw.gw.run_cli("approvals", "approve", rid, "--token", sgw.gw.token("bob", ("ops",)))
        assert res.returncode == 0, res.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    assert dest.read_bytes() == local.read_bytes()


def test_port_forwarding_is_refused_without_a_policy(sgw: SshGateway) -> None:
    res = subprocess.run(
        sgw.ssh_cmd("alice", "-W", "127.0.0.1:22"), capture_output=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert res.returncode == 255
    assert b"forwarding failed" in res.stderr, res.stderr
    refused = sgw.wait_events("ssh_forward", verdict="deny", kind="local", destination="127.0.0.1:22")
    assert "no policy allows" in refused[0]["reason"]


def test_agent_forwarding_is_refused_and_recorded(sgw: SshGateway, tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, 10, what="ssh-agent socket")
        cmd = sgw.ssh_cmd("alice", "-A", "echo $SSH_AUTH_SOCK-end")
        cmd[cmd.index("IdentityAgent=none")] = f"IdentityAgent={sock}"
        res = subprocess.run(cmd, capture_output=True, timeout=60)
    finally:
        agent.terminate()
        agent.wait(10)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"-end\n"  # no agent socket on the target
    sgw.wait_events("ssh_forward", kind="agent", verdict="deny")


def test_unregistered_key_and_bad_token_are_refused(sgw: SshGateway, tmp_path: Path) -> None:
    res = subprocess.run(
        sgw.ssh_cmd("alice", "true", key=sgw.unregistered_key()), capture_output=True, timeout=60
    )
    assert res.returncode == 255
    assert b"Permission denied" in res.stderr
    sgw.wait_events("auth_failed", method="publickey")


def _askpass(tmp_path: Path, secret: str) -> dict[str, str]:
    script = tmp_path / "askpass.sh"
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret)
    script.write_text(f"#!/bin/sh\ncat {secret_file}\n")
    script.chmod(0o700)
    return {**os.environ, "SSH_ASKPASS": str(script), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}


def _password_ssh(
    sgw: SshGateway, tmp_path: Path, secret: str, *args: str
) -> subprocess.CompletedProcess[bytes]:
    cmd = sgw.ssh_cmd("alice", *args, key=sgw.unregistered_key())
    cmd[cmd.index("BatchMode=yes")] = "BatchMode=no"
    cmd[cmd.index("-i") : cmd.index("-i") + 2] = [
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "NumberOfPasswordPrompts=1",
    ]
    env = _askpass(tmp_path, secret)
    return subprocess.run(
        cmd, capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )


def test_a_token_works_as_the_password(sgw: SshGateway, tmp_path: Path) -> None:
    token = sgw.gw.token("alice", ("dev",))
    res = _password_ssh(sgw, tmp_path, token, "echo via-token")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"via-token\n"
    bad = _password_ssh(sgw, tmp_path, token[:-4] + "AAAA", "echo no")
    assert bad.returncode == 255
    now = int(time.time())
    expired = _signed(sgw.gw.data_dir, sub="alice", exp=now - 300, nbf=now - 900, iat=now - 900)
    res = _password_ssh(sgw, tmp_path, expired, "echo no")
    assert res.returncode == 255
    assert res.stdout == b""
    sgw.wait_events("auth_failed", method="password")


def test_prompt_id_from_sendenv_tags_the_events(sgw: SshGateway) -> None:
    cmd = sgw.ssh_cmd("alice", "-o", "SendEnv=HOOP_PROMPT_ID", "echo tagged")
    res = subprocess.run(
        cmd, capture_output=True, timeout=60, env={**os.environ, "HOOP_PROMPT_ID": "prm-ssh-42"}
    )
    assert res.returncode == 0, res.stderr
    tagged = sgw.wait_events("ssh_exec", command="echo tagged")
    assert tagged[-1]["_prompt"] == "prm-ssh-42"


def _drive_pty(argv: list[str], inputs: list[bytes], timeout: float = 30.0) -> tuple[int, bytes]:
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execvp(argv[0], argv)
    out = bytearray()
    deadline = time.monotonic() + timeout
    pending = list(inputs)
    last_write = 0.0
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif pending and time.monotonic() - last_write > 0.3:
            os.write(fd, pending.pop(0))
            last_write = time.monotonic()
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), bytes(out)


def test_pty_shell_is_masked_recorded_and_exports_a_playable_cast(
    sgw: SshGateway, pii: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = pii
    argv = sgw.ssh_cmd("alice", "-tt")
    status, out = _drive_pty(
        argv, [b"echo $((6*7))-answer\r", f"grep card {path} | head -2\r".encode(), b"stty size\r", b"exit\r"]
    )
    assert status == 0, out
    assert b"42-answer" in out
    assert CARD.encode() not in out
    session = sgw.sessions()[-1]
    wait_until(lambda: bool(sgw.events("terminal_end", session["id"])), 15, what="terminal_end")
    cast = tmp_path / "x.cast"
    res = sgw.gw.run_cli("sessions", "show", session["id"], "--asciicast")
    assert res.returncode == 0, res.stderr
    cast.write_text(res.stdout)
    assert CARD not in res.stdout
    played = subprocess.run(
        [sys.executable, "-m", "asciinema", "cat", str(cast)], capture_output=True, timeout=60
    )
    assert played.returncode == 0, played.stderr
    assert b"42-answer" in played.stdout
    replayed = sgw.gw.run_cli("replay", session["id"], "--no-wait")
    assert replayed.returncode == 0, replayed.stderr
    assert "42-answer" in replayed.stdout and CARD not in replayed.stdout
    lines = sgw.events("command_line", session["id"])
    assert any("echo $((6*7))-answer" in e["line"] and e["best_effort"] for e in lines)


def test_client_disconnect_mid_transfer_keeps_the_gateway_and_the_record(sgw: SshGateway, sshd: Sshd) -> None:
    big = sshd.workdir / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 48)
    proc = subprocess.Popen(
        sgw.ssh_cmd("alice", f"cat {big}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    got = proc.stdout.read(1 << 20)
    assert len(got) == 1 << 20
    proc.kill()
    proc.communicate(timeout=30)
    res = sgw.ssh("alice", "echo still-here")
    assert res.stdout == b"still-here\n"
    wait_until(
        lambda: any(s["status"] == "closed" and s["close_reason"] for s in sgw.sessions()),
        15,
        what="closed session",
    )


def test_upstream_killed_mid_session(tmp_path: Path, pg: TestPg, fresh_sshd: Sshd) -> None:
    gw = SshGateway(tmp_path / "gw", pg, fresh_sshd).start()
    try:
        proc = subprocess.Popen(
            gw.ssh_cmd("alice", "echo started; sleep 60"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"
        fresh_sshd.kill()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 255
        assert b"hoopgw" in err
        # the gateway still answers, with a clear message that the target is down
        res = gw.ssh("alice", "true")
        assert res.returncode == 255
        assert b"cannot connect to the target" in res.stderr
        assert gw.gw.running
    finally:
        gw.stop()


def test_pinned_host_key_mismatch_refuses(tmp_path: Path, pg: TestPg, sshd: Sshd) -> None:
    wrong = "SHA256:" + "A" * 43
    gw = SshGateway(tmp_path / "gw", pg, sshd, connection={"host_key": wrong}).start()
    try:
        res = gw.ssh("alice", "true")
        assert res.returncode == 255
        assert b"host key mismatch" in res.stderr
        assert wrong.encode() in res.stderr
    finally:
        gw.stop()


def test_the_gateway_host_key_is_generated_once_into_data_dir(sgw: SshGateway) -> None:
    key = sgw.gw.data_dir / "ssh_host_ed25519_key"
    assert key.exists() and (key.stat().st_mode & 0o077) == 0
    scan = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", "-p", str(sgw.port), "127.0.0.1"], capture_output=True, timeout=30
    )
    shown = subprocess.run(["ssh-keygen", "-lf", "-"], input=scan.stdout, capture_output=True, timeout=30)
    local = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, timeout=30)
    assert shown.stdout.split()[1] == local.stdout.split()[1]


def test_many_clients_in_parallel(sgw: SshGateway) -> None:
    results: list[bytes] = []

    def one(i: int) -> None:
        results.append(sgw.ssh("alice", f"echo n{i}").stdout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == sorted(f"n{i}\n".encode() for i in range(8))
