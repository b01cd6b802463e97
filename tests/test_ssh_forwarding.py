"""Port forwarding through the SSH gateway (allowed by a policy, recorded) and session expiry.

Real OpenSSH client -> gateway -> real sshd; the forwarded service is a small TCP echo server.
"""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoopgw._pgcluster import free_port
from tests._support.pg import TestPg
from tests._support.procs import wait_until
from tests._support.sshd import Sshd
from tests._support.sshgw import SshGateway
from tests.test_ssh_gateway import _password_ssh

_EXIT_ON_FAILURE = ("-o", "ExitOnForwardFailure=yes")


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(10)
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def rport() -> int:
    return free_port()


@pytest.fixture(scope="module")
def fgw(
    tmp_path_factory: pytest.TempPathFactory, pg: TestPg, sshd: Sshd, echo: int, rport: int
) -> Iterator[SshGateway]:
    policy = [
        {
            "name": "fwd",
            "subjects": ["group:dev"],
            "connections": ["bankhost"],
            "allow": [
                "exec",
                "shell",
                f"forward:local:127.0.0.1:{echo}",
                f"forward:remote:127.0.0.1:{rport}",
                "forward:agent",
            ],
        }
    ]
    gw = SshGateway(
        tmp_path_factory.mktemp("fwd"), pg, sshd, policy=policy, identity={"session_grace": 1}
    ).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_an_allowed_local_forward_works_and_is_recorded(fgw: SshGateway, echo: int) -> None:
    payload = os.urandom(100_000)
    res = subprocess.run(
        fgw.ssh_cmd("alice", "-W", f"127.0.0.1:{echo}"),
        input=payload,
        capture_output=True,
        timeout=60,
    )
    # the echo server answers until the client's EOF reaches it
    assert res.stdout == payload, res.stderr
    opened = fgw.wait_events("ssh_forward", kind="local", destination=f"127.0.0.1:{echo}", verdict="allow")
    assert opened
    closed = fgw.wait_events("ssh_forward_closed", kind="local", destination=f"127.0.0.1:{echo}")
    assert closed[0]["bytes_in"] == len(payload) and closed[0]["bytes_out"] == len(payload)


def test_a_forward_to_another_port_is_refused(fgw: SshGateway, echo: int) -> None:
    other = free_port()
    cmd = fgw.ssh_cmd("alice", "-W", f"127.0.0.1:{other}")
    res = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 255
    fgw.wait_events("ssh_forward", kind="local", destination=f"127.0.0.1:{other}", verdict="deny")


def test_an_allowed_remote_forward_works(fgw: SshGateway, echo: int, rport: int) -> None:
    proc = subprocess.Popen(
        fgw.ssh_cmd("alice", "-N", *_EXIT_ON_FAILURE, "-R", f"127.0.0.1:{rport}:127.0.0.1:{echo}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        fgw.wait_events("ssh_forward", kind="remote", destination=f"127.0.0.1:{rport}", verdict="allow")
        with socket.create_connection(("127.0.0.1", rport), timeout=10) as sock:
            sock.sendall(b"through -R\n")
            got = b""
            deadline = time.monotonic() + 10
            while len(got) < 11 and time.monotonic() < deadline:
                got += sock.recv(100)
        assert got == b"through -R\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_remote_forward_on_another_port_is_refused(fgw: SshGateway, echo: int) -> None:
    other = free_port()
    res = subprocess.run(
        fgw.ssh_cmd("alice", "-N", *_EXIT_ON_FAILURE, "-R", f"127.0.0.1:{other}:127.0.0.1:{echo}"),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 255
    assert b"forwarding failed" in res.stderr, res.stderr
    fgw.wait_events("ssh_forward", kind="remote", destination=f"127.0.0.1:{other}", verdict="deny")


def test_the_session_ends_when_its_token_expires(fgw: SshGateway, tmp_path: Path) -> None:
    token = fgw.gw.token("alice", ("dev",), ttl="3s")
    started = time.monotonic()
    res = _password_ssh(fgw, tmp_path, token, "echo in; sleep 60")
    assert res.stdout == b"in\n"
    assert res.returncode == 255
    assert time.monotonic() - started < 40
    wait_until(lambda: bool(fgw.events("credential_expired")), 10, what="credential_expired")


def test_an_allowed_agent_forward_reaches_the_clients_agent(fgw: SshGateway, tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    key = tmp_path / "agent_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, 10, what="ssh-agent socket")
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], check=True, timeout=30, env=env, capture_output=True)
        cmd = fgw.ssh_cmd("alice", "-A", "ssh-add -l")
        cmd[cmd.index("IdentityAgent=none")] = f"IdentityAgent={sock}"
        res = subprocess.run(cmd, capture_output=True, timeout=60, env=env)
    finally:
        agent.terminate()
        agent.wait(10)
    want = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, timeout=30, check=True)
    # on the target, the agent it reaches through the gateway holds the client's key
    assert res.returncode == 0, res.stderr
    assert want.stdout.split()[1] in res.stdout
    fgw.wait_events("ssh_forward", kind="agent", verdict="allow")
