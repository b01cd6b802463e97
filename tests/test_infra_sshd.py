"""The test sshd itself: the real OpenSSH clients the SSH gateway must carry work against it directly."""

from __future__ import annotations

import hashlib
import os
import pty
import re
import select
import shlex
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support.procs import clean_env, port_is_free, require_binary, run, wait_until
from ._support.sshd import Sshd, fingerprint, process_tree


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def remote_dir(sshd: Sshd) -> Iterator[Path]:
    """A directory of this test's own on the (shared) server side."""
    path = sshd.workdir / f"t-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False, timeout=30)


def ok(cmd: list[str], *, timeout: float = 60.0, input: str | None = None) -> str:
    res = run(cmd, timeout=timeout, input=input)
    assert res.returncode == 0, f"{cmd[0]} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


# ---------------------------------------------------------------------------------------------- exec
def test_banner_and_exec(sshd: Sshd) -> None:
    assert sshd.banner().startswith("SSH-2.0-OpenSSH_")
    assert ok(sshd.ssh_cmd("echo", "hi")) == "hi\n"
    assert ok(sshd.ssh_cmd("id -un")).strip() == sshd.user
    assert any(f"for {sshd.user} from 127.0.0.1" in line for line in sshd.accepted_logins())


def test_exit_status_and_stderr(sshd: Sshd) -> None:
    res = run(sshd.ssh_cmd("echo out; echo err >&2; exit 3"), timeout=30)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")


def test_stdin_reaches_the_command(sshd: Sshd) -> None:
    data = "".join(f"line {i}\n" for i in range(5000))
    assert ok(sshd.ssh_cmd("cat"), input=data) == data


def test_accepted_env(sshd: Sshd) -> None:
    out = ok(sshd.ssh_cmd('echo "[$HOOP_PROMPT_ID]"', options=["-o", "SetEnv=HOOP_PROMPT_ID=p-123"]))
    assert out == "[p-123]\n"


def test_wrong_client_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ok(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
    res = run(sshd.ssh_cmd("true", key=other), timeout=30)
    assert res.returncode == 255
    assert "Permission denied (publickey)" in res.stderr


# ---------------------------------------------------------------------------------------------- pty
def test_pty_shell_driven_from_a_python_pty(sshd: Sshd) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        sshd.ssh_cmd(options=["-tt"]),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=clean_env({"TERM": "dumb"}),
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    try:
        os.write(master, b"echo pty-$((6*7)); tty; stty size\n")
        os.write(master, b"stty rows 33 cols 101; stty size; exit 7\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: ssh exited and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(10) == 7, out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = out.decode(errors="replace")
    assert "pty-42" in text
    assert "/dev/pts/" in text
    assert "33 101" in text


def test_pty_with_script(sshd: Sshd, tmp_path: Path) -> None:
    """util-linux ``script`` gives ssh a local terminal, as a user's would."""
    require_binary("script")
    typescript = tmp_path / "typescript"
    cmd = shlex.join(sshd.ssh_cmd("echo script-$((2+3)); tty", options=["-tt"]))
    res = run(["script", "-q", "-e", "-c", cmd, str(typescript)], timeout=30, env={"TERM": "dumb"})
    assert res.returncode == 0, res.stderr
    assert "script-5" in res.stdout
    assert "/dev/pts/" in typescript.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("mode", ["sftp", "legacy"])
def test_scp_up_and_down(sshd: Sshd, remote_dir: Path, tmp_path: Path, mode: str) -> None:
    flags = ["-O"] if mode == "legacy" else ["-s"]
    src = random_file(tmp_path / "src.bin", 3_000_001)
    ok(sshd.scp_cmd(*flags, str(src), sshd.remote(remote_dir / "up.bin")))
    assert sha256(remote_dir / "up.bin") == sha256(src)
    down = tmp_path / "down.bin"
    ok(sshd.scp_cmd(*flags, sshd.remote(remote_dir / "up.bin"), str(down)))
    assert sha256(down) == sha256(src)
    # a directory, recursively
    random_file(tmp_path / "tree" / "a.bin", 1000)
    random_file(tmp_path / "tree" / "sub" / "b.bin", 70_000)
    ok(sshd.scp_cmd(*flags, "-r", str(tmp_path / "tree"), sshd.remote(remote_dir)))
    assert tree_digest(remote_dir / "tree") == tree_digest(tmp_path / "tree")


def test_sftp_batch(sshd: Sshd, remote_dir: Path, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src.bin", 1_500_000)
    down = tmp_path / "down.bin"
    batch = tmp_path / "batch"
    batch.write_text(
        f"cd {remote_dir}\n"
        "mkdir d\n"
        f"put {src} d/a.bin\n"
        "rename d/a.bin d/b.bin\n"
        "chmod 600 d/b.bin\n"
        "ln -s b.bin d/link\n"
        f"get d/b.bin {down}\n"
        "ls -l d\n"
        "mkdir gone\n"
        "rmdir gone\n"
    )
    out = ok(sshd.sftp_cmd("-b", str(batch)))
    assert "b.bin" in out
    assert sha256(down) == sha256(src) == sha256(remote_dir / "d" / "b.bin")
    assert (remote_dir / "d" / "b.bin").stat().st_mode & 0o777 == 0o600
    assert os.readlink(remote_dir / "d" / "link") == "b.bin"
    assert not (remote_dir / "gone").exists()
    # a failing command ends a batch with an error
    batch.write_text(f"get {remote_dir}/missing.bin {tmp_path}/x\n")
    res = run(sshd.sftp_cmd("-b", str(batch)), timeout=30)
    assert res.returncode != 0
    assert "not found" in res.stderr


def test_rsync_up_and_down(sshd: Sshd, remote_dir: Path, tmp_path: Path) -> None:
    require_binary("rsync")
    src = tmp_path / "src"
    random_file(src / "big.bin", 2_000_000)
    random_file(src / "sub" / "small.bin", 123)
    (src / "sub" / "empty").write_bytes(b"")
    e = sshd.rsync_ssh()
    ok(["rsync", "-a", "-e", e, f"{src}/", sshd.remote(f"{remote_dir}/dst/")])
    assert tree_digest(remote_dir / "dst") == tree_digest(src)
    # a delta transfer: change a few bytes in the middle
    with (src / "big.bin").open("r+b") as f:
        f.seek(1_000_000)
        f.write(b"changed!")
    mtime = (src / "big.bin").stat().st_mtime + 10  # same size: rsync's quick check looks at the mtime
    os.utime(src / "big.bin", (mtime, mtime))
    out = ok(
        ["rsync", "-a", "--stats", "--no-whole-file", "-e", e, f"{src}/", sshd.remote(f"{remote_dir}/dst")]
    )
    matched = re.search(r"^Matched data: ([\d,]+) bytes", out, re.M)
    assert matched is not None and int(matched.group(1).replace(",", "")) > 1_000_000, out
    assert tree_digest(remote_dir / "dst") == tree_digest(src)
    back = tmp_path / "back"
    ok(["rsync", "-a", "-e", e, sshd.remote(f"{remote_dir}/dst/"), f"{back}/"])
    assert tree_digest(back) == tree_digest(src)


# ---------------------------------------------------------------------------------------------- host key
def test_host_key_fingerprint_is_what_the_server_presents(sshd: Sshd, tmp_path: Path) -> None:
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    scanned = ok(["ssh-keyscan", "-t", "ed25519", "-p", str(sshd.port), "127.0.0.1"], timeout=30)
    (tmp_path / "scanned").write_text(scanned)
    assert fingerprint(tmp_path / "scanned") == sshd.host_key_fingerprint
    line = sshd.known_hosts_path.read_text().splitlines()[0]
    assert line == f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}"
    assert sshd.host_public_key.startswith("ssh-ed25519 AAAA")


def test_known_hosts_pins_the_host_key(sshd: Sshd, tmp_path: Path) -> None:
    assert ok(sshd.ssh_cmd("echo", "pinned", strict=True)) == "pinned\n"
    # the ssh_config helper pins it too
    assert ok(["ssh", "-F", str(sshd.ssh_config_path), "sshd-test", "echo", "via-config"]) == "via-config\n"
    # a known_hosts with another key for the same host and port: refused
    other = tmp_path / "other_host_key"
    ok(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
    wrong = tmp_path / "known_hosts"
    wrong_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {wrong_key}\n")
    cmd = sshd.ssh_cmd("true", strict=True)
    cmd[cmd.index(f"UserKnownHostsFile={sshd.known_hosts_path}")] = f"UserKnownHostsFile={wrong}"
    res = run(cmd, timeout=30)
    assert res.returncode == 255
    assert "Host key verification failed" in res.stderr


# ---------------------------------------------------------------------------------------------- lifecycle
def _session(sshd: Sshd) -> tuple[subprocess.Popen[str], list[int]]:
    """A running ``sleep`` session; return the client and sshd's process tree once it is established."""
    proc = subprocess.Popen(
        sshd.ssh_cmd("echo ready; exec sleep 120"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    assert sshd.pid is not None
    tree = process_tree(sshd.pid)
    assert len(tree) >= 3, tree  # sshd, the connection's process(es), sleep
    return proc, tree


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_kill_ends_every_session(fresh_sshd: Sshd) -> None:
    proc, tree = _session(fresh_sshd)
    try:
        fresh_sshd.kill()
        assert proc.wait(15) == 255
        assert all(_gone(p) for p in tree), [p for p in tree if not _gone(p)]
        assert not fresh_sshd.running
        assert fresh_sshd.banner(timeout=1) == ""
    finally:
        proc.kill()
        proc.communicate(timeout=5)
    # restart: same port, same host key, files kept
    port, fp = fresh_sshd.port, fresh_sshd.host_key_fingerprint
    fresh_sshd.start()
    assert (fresh_sshd.port, fresh_sshd.host_key_fingerprint) == (port, fp)
    assert ok(fresh_sshd.ssh_cmd("echo", "back", strict=True)) == "back\n"


def test_kill_sessions_keeps_listening(fresh_sshd: Sshd) -> None:
    proc, tree = _session(fresh_sshd)
    try:
        killed = fresh_sshd.kill_sessions()
        assert set(killed) == set(tree) - {fresh_sshd.pid}
        assert proc.wait(15) == 255
        assert fresh_sshd.connections() == []
    finally:
        proc.kill()
        proc.communicate(timeout=5)
    assert ok(fresh_sshd.ssh_cmd("echo", "still")) == "still\n"


def test_stop_ends_sessions_and_frees_the_port(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "sshd").start()
    proc, tree = _session(server)
    try:
        assert server.stop(timeout=5) is not None
        assert proc.wait(15) == 255
        assert all(_gone(p) for p in tree)
        wait_until(lambda: port_is_free(server.port), 5, what="the port to be free")
    finally:
        proc.kill()
        proc.communicate(timeout=5)
        server.stop()
    assert (tmp_path / "sshd").exists()  # a given base_dir is not removed


def test_a_taken_port_is_replaced(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "sshd")
    taken = server.port
    with socket.socket() as s:
        s.bind(("127.0.0.1", taken))
        s.listen()
        try:
            server.start()
            assert server.port != taken
            assert f"[127.0.0.1]:{server.port} " in server.known_hosts_path.read_text()
            assert ok(server.ssh_cmd("echo", "moved", strict=True)) == "moved\n"
        finally:
            server.stop()
