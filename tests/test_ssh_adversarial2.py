"""Adversarial regression tests for the SSH gateway, second pass: confirmed gaps.

Real OpenSSH clients (and asyncssh as a client where OpenSSH cannot send the request) -> the REAL
gateway -> a real test sshd. Each test states the attack, what happens today and what should happen.
They fail until the gaps are fixed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from hoopgw._pgcluster import free_port
from tests._support.gateway import Gateway
from tests._support.pg import TestPg
from tests._support.sshd import Sshd
from tests._support.sshgw import _OPTS, SshGateway

CARD_DIGITS = "4111111111111111"


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


# -- environment variables: forwarded upstream unchecked and unrecorded ------------------------------------
@pytest.fixture(scope="module")
def permissive_sshd() -> Iterator[Sshd]:
    """A target whose sshd accepts every environment variable (``AcceptEnv *``), as some hosts do."""
    server = Sshd(settings={"AcceptEnv": "*"}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def envgw(
    tmp_path_factory: pytest.TempPathFactory, pg: TestPg, permissive_sshd: Sshd
) -> Iterator[tuple[SshGateway, Path]]:
    base = permissive_sshd.workdir / "env"
    (base / "pub").mkdir(parents=True, exist_ok=True)
    (base / "pub" / "a.log").write_text("public log line\n")
    policy: list[dict[str, Any]] = [
        {
            # docs/SSH.md's "agents" shape: exactly the listed command, nothing else
            "name": "agents",
            "subjects": ["group:agents"],
            "connections": ["bankhost"],
            "allow": [f"exec:cat {base}/pub/*"],
        },
        {
            "name": "noshell",
            "subjects": ["group:noshell"],
            "connections": ["bankhost"],
            "allow": ["exec"],
            "deny": ["shell"],
        },
        {"name": "admin", "subjects": ["user:admin"], "connections": ["*"], "allow": ["read"]},
    ]
    gw = SshGateway(tmp_path_factory.mktemp("sshenv"), pg, permissive_sshd, policy=policy).start()
    try:
        _register(gw, "agent", "agents")
        _register(gw, "nora", "noshell")
        yield gw, base
    finally:
        gw.stop()


async def _run_with_env(
    port: int, user: str, key: Path, command: str, env: dict[str, str], stdin: str = ""
) -> int:
    conn = await asyncssh.connect(
        "127.0.0.1", port, username=user, client_keys=[str(key)], known_hosts=None, agent_path=None
    )
    try:
        proc = await asyncio.wait_for(conn.run(command, env=env, input=stdin), 30)
        return int(proc.exit_status or 0)
    finally:
        conn.close()


def test_env_bash_env_cannot_run_commands_beside_an_allowed_exec(envgw: tuple[SshGateway, Path]) -> None:
    """``allow = ["exec:cat PUB/*"]`` only. The client sends ``env BASH_ENV=$(touch MARK)`` (OpenSSH:
    ``SetEnv``/``SendEnv``) with the allowed ``cat``; the gateway forwards every env request upstream, the
    target's bash expands BASH_ENV before running the command, so MARK is created: any command for a
    caller allowed one exact command. No event records the variable. Expected: only an allow-list of
    variables (LANG, LC_*, TERM-like, HOOP_PROMPT_ID; configurable) is forwarded, others refused and
    recorded in ``ssh_request``."""
    gw, base = envgw
    mark = base / "BASH_ENV_RAN"
    mark.unlink(missing_ok=True)
    asyncio.run(
        _run_with_env(
            gw.port, "agent", gw.keys["agent"], f"cat {base}/pub/a.log", {"BASH_ENV": f"$(id > {mark})"}
        )
    )
    assert not mark.exists(), f"BASH_ENV ran a command through an exact exec allow-list: {mark.read_text()!r}"


def test_env_bash_env_stdin_is_not_a_shell_past_deny_shell(envgw: tuple[SshGateway, Path]) -> None:
    """``allow = ["exec"], deny = ["shell"]``: ``true`` with ``BASH_ENV=/dev/stdin`` makes the target's bash
    read a script from stdin — a shell whose typed commands are never recorded as command lines.
    Expected: the variable is not forwarded (so ``$((6*7))`` is never evaluated)."""
    gw, base = envgw
    mark = base / "STDIN_SHELL_RAN"
    mark.unlink(missing_ok=True)
    asyncio.run(
        _run_with_env(
            gw.port, "nora", gw.keys["nora"], "true", {"BASH_ENV": "/dev/stdin"}, stdin=f"touch {mark}\n"
        )
    )
    assert not mark.exists(), "BASH_ENV=/dev/stdin turned an allowed `true` into a shell reading stdin"


# -- SFTP: a symlink made through the gateway points anywhere --------------------------------------------
@pytest.fixture(scope="module")
def symbase(sshd: Sshd) -> Path:
    path = sshd.workdir / "adversarial2-sym"
    for sub in ("files", "locked"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "secret.txt").write_text("TOP-SECRET-CONTENT\n")
    return path


@pytest.fixture(scope="module")
def filesgw(
    tmp_path_factory: pytest.TempPathFactory, pg: TestPg, sshd: Sshd, symbase: Path
) -> Iterator[SshGateway]:
    b = symbase
    policy: list[dict[str, Any]] = [
        {
            # transfers only, only under files/
            "name": "files",
            "subjects": ["group:files"],
            "connections": ["bankhost"],
            "allow": [f"file-read:{b}/files/*", f"file-write:{b}/files/*"],
        },
        {"name": "admin", "subjects": ["user:admin"], "connections": ["*"], "allow": ["read"]},
    ]
    gw = SshGateway(tmp_path_factory.mktemp("sshsym"), pg, sshd, policy=policy).start()
    try:
        _register(gw, "frank", "files")
        yield gw
    finally:
        gw.stop()


def test_sftp_symlink_made_through_the_gateway_cannot_read_a_denied_file(
    filesgw: SshGateway, symbase: Path, tmp_path: Path
) -> None:
    """frank may read and write only under files/; ``get SECRET`` is refused. With OpenSSH's sftp:
    ``ln -s SECRET files/l`` is decided as a write of files/l only (the target is never looked at), and
    ``get files/l`` as a read of files/l: the secret comes back. Expected: a symlink whose target the
    caller may not read and write (resolved against the link's directory when relative) is refused."""
    link = symbase / "files" / "l"
    link.unlink(missing_ok=True)
    got = tmp_path / "via"
    batch = tmp_path / "batch"
    batch.write_text(f"-ln -s {symbase}/secret.txt {link}\n-get {link} {got}\n")
    subprocess.run(filesgw.sftp_cmd("frank", batch), capture_output=True, timeout=60)
    assert not (got.exists() and b"TOP-SECRET" in got.read_bytes()), (
        "read a denied file through a new symlink"
    )
    assert not link.is_symlink(), f"the gateway let frank make {link} -> {link.readlink()}"


def test_sftp_symlink_made_through_the_gateway_cannot_write_a_denied_file(
    filesgw: SshGateway, symbase: Path, tmp_path: Path
) -> None:
    """As above for writing: ``ln -s LOCKED/conf files/w`` then ``put X files/w`` overwrites LOCKED/conf,
    where frank may not write. Expected: the symlink is refused, LOCKED/conf unchanged."""
    victim = symbase / "locked" / "conf"
    victim.write_text("original\n")
    link = symbase / "files" / "w"
    link.unlink(missing_ok=True)
    payload = tmp_path / "payload"
    payload.write_text("OVERWRITTEN\n")
    batch = tmp_path / "batch"
    batch.write_text(f"-ln -s {victim} {link}\n-put {payload} {link}\n")
    subprocess.run(filesgw.sftp_cmd("frank", batch), capture_output=True, timeout=60)
    assert victim.read_text() == "original\n", "wrote a write-denied file through a new symlink"


def test_refused_sftp_operation_reason_masks_the_path(
    filesgw: SshGateway, symbase: Path, tmp_path: Path
) -> None:
    """A refused SFTP open is recorded as ``ssh_file`` with the path masked
    (``/x/************1111.txt``), but its ``reason`` is the refusal message with the raw path
    (``no policy allows writing /x/4111111111111111.txt``). Expected: no event holds the raw number."""
    batch = tmp_path / "batch"
    src = tmp_path / "up.txt"
    src.write_text("x\n")
    batch.write_text(f"-put {src} {symbase}/locked/{CARD_DIGITS}.txt\n")
    subprocess.run(filesgw.sftp_cmd("frank", batch), capture_output=True, timeout=60)
    filesgw.wait_events("ssh_file", status="refused")
    leaked = [
        {k: v for k, v in e.items() if not k.startswith("_")}
        for e in filesgw.events()
        if CARD_DIGITS in repr(e)
    ]
    assert not leaked, leaked


# -- authentication: a public key alone reveals whose it is -----------------------------------------------
@pytest.fixture
def sharedgw(tmp_path: Path, pg: TestPg, sshd: Sshd) -> Iterator[SshGateway]:
    """Two connections on one port: ``bankhost`` (alice's group may use it) and ``payroll`` (nobody)."""
    port = free_port()
    tables = [
        {
            "name": name,
            "upstream": f"ssh://{sshd.user}@127.0.0.1:{sshd.port}",
            "private_key": f"file:{sshd.client_key}",
            "host_key": sshd.host_key_fingerprint,
            "listen": f"127.0.0.1:{port}",
        }
        for name in ("bankhost", "payroll")
    ]
    policy = [
        {"name": "dev", "subjects": ["group:dev"], "connections": ["bankhost"], "allow": ["exec"]},
        {"name": "admin", "subjects": ["user:admin"], "connections": ["*"], "allow": ["read"]},
    ]
    gw = SshGateway(tmp_path, pg, sshd, policy=policy)
    gw.gw = Gateway(
        tmp_path, pg, [], ssh=tables, gateway={"admins": ["user:admin"]}, extra={"policy": policy}
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_public_key_probe_does_not_reveal_the_owner(sharedgw: SshGateway) -> None:
    """Someone holding only alice's PUBLIC key (it is public: GitHub, authorized_keys files) offers it
    without a signature (the "query" step OpenSSH does with a .pub file). The gateway looks the key up,
    asks the policy, and answers with the banner ``hoopgw: no policy gives alice access to 'payroll'`` —
    who owns the key and where she may not go, before any proof of possession — and records an
    ``auth_failed`` (policy) event in alice's name. Expected: no subject named before a signed request
    succeeds (decide access and send banners only for signed requests)."""
    key = sharedgw.key_of("alice")
    pub_only = sharedgw.workdir / "stolen.pub"
    shutil.copy(f"{key}.pub", pub_only)
    pub_only.chmod(0o600)
    opts = [o if o != "LogLevel=ERROR" else "LogLevel=INFO" for o in _OPTS]  # INFO: ssh shows banners
    res = subprocess.run(
        ["ssh", *opts, "-i", str(pub_only), "-p", str(sharedgw.port), "-l", "x@payroll", "127.0.0.1", "true"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 255
    assert b"alice" not in res.stderr, res.stderr
