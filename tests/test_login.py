"""``hoopgw login``: the device flow against the real idp process, driven like a user would.

The CLI runs as a child process with a bounded timeout; the test reads the user code from its stderr and
approves (or denies, or expires) it through the idp's control endpoint.
"""

from __future__ import annotations

import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from hoopgw.cli._login import cache_path
from hoopgw.config import load_config

from ._support.gateway import Gateway
from ._support.idp import Idp
from ._support.procs import REPO_ROOT, clean_env, free_port, run

GatewayFactory = Any
POLICY = {"policy": [{"name": "all", "subjects": ["group:dev"], "connections": ["*"], "allow": ["*"]}]}
_CODE = re.compile(r"enter the code: (\S+)")


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    provider = Idp(tmp_path_factory.mktemp("idp"), interval=1).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def config(tmp_path: Path, idp: Idp) -> Path:
    path = tmp_path / "hoopgw.toml"
    path.write_text(f'[gateway]\ndata_dir = "var"\n[identity]\nissuer = "{idp.url}"\naudience = "hoopgw"\n')
    return path


@dataclass
class Login:
    """A running ``hoopgw login`` child: its user code, then its result."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None]
    stderr: list[str]
    pump: threading.Thread

    def user_code(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if m := _CODE.search(line):
                return m.group(1)
        self.proc.kill()
        self.finish()
        raise AssertionError(f"no user code on stderr within {timeout} s: {''.join(self.stderr)!r}")

    def finish(self, timeout: float = 30.0) -> tuple[int, str, str]:
        # stderr belongs to the pump thread: wait, then read stdout (a token is far below a pipe's buffer)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        assert self.proc.stdout is not None
        with self.proc.stdout:
            out = self.proc.stdout.read()
        self.pump.join(10)
        assert not self.pump.is_alive(), "stderr still open after the CLI exited"
        return self.proc.returncode, out, "".join(self.stderr)


def start_login(config: Path, cache: Path, *args: str) -> Login:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hoopgw", "login", *args, "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env({"XDG_CACHE_HOME": str(cache)}),
        cwd=REPO_ROOT,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        with proc.stderr:
            for line in proc.stderr:
                seen.append(line)
                lines.put(line)
        lines.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return Login(proc, lines, seen, thread)


def login_cli(config: Path, cache: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run(
        [sys.executable, "-m", "hoopgw", "login", *args, "-c", str(config)],
        env={"XDG_CACHE_HOME": str(cache)},
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def test_print_token_flow_cache_and_gateway(
    gateway_factory: GatewayFactory, idp: Idp, tmp_path: Path
) -> None:
    gw: Gateway = gateway_factory(identity={"issuer": idp.url, "audience": "hoopgw"}, extra=POLICY)
    cache = tmp_path / "cache"
    devices = idp.stats()["device"]
    login = start_login(gw.config_path, cache, "--print-token", "--timeout", "60s")
    code = login.user_code()
    idp.control("approve", user_code=code, sub="alice", groups=["dev"], email="alice@example.com")
    rc, out, err = login.finish()
    assert rc == 0, err
    token = out.strip()
    assert out == token + "\n" and token.startswith("eyJ")  # only the token on stdout
    assert "To log in, open " in err and f"{idp.url}/activate" in err and token not in err
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["aud"], claims["iss"]) == ("alice", "hoopgw", idp.url)

    path = cache / "hoopgw" / cache_path(load_config(gw.config_path).identity).name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert orjson.loads(path.read_bytes())["token"] == token

    res = gw.psql("SELECT current_user;", password=token)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout.strip() == "app"

    again = login_cli(gw.config_path, cache, "--print-token")
    assert again.returncode == 0, again.stderr
    assert again.stdout == token + "\n" and again.stderr == ""
    assert idp.stats()["device"] == devices + 1  # the second run started no device flow


def test_plain_login_reports_who(config: Path, idp: Idp, tmp_path: Path) -> None:
    # a cache directory others can read is made private before the token goes in
    (tmp_path / "cache" / "hoopgw").mkdir(parents=True)
    (tmp_path / "cache" / "hoopgw").chmod(0o777)
    login = start_login(config, tmp_path / "cache")
    idp.control("approve", user_code=login.user_code(), sub="bob", groups=["dba", "dev"])
    rc, out, err = login.finish()
    assert rc == 0, err
    assert out == ""
    assert "Logged in as bob (groups: dba, dev)" in err
    name = cache_path(load_config(config).identity).name
    assert f"cached in {tmp_path / 'cache' / 'hoopgw' / name}" in err
    assert stat.S_IMODE((tmp_path / "cache" / "hoopgw").stat().st_mode) == 0o700


def test_denied(config: Path, idp: Idp, tmp_path: Path) -> None:
    login = start_login(config, tmp_path / "cache", "--print-token")
    idp.control("deny", user_code=login.user_code())
    rc, out, err = login.finish()
    assert rc == 1 and out == ""
    assert "hoopgw: login failed: the login was denied at the issuer" in err
    assert not (tmp_path / "cache" / "hoopgw").exists()


def test_expired(config: Path, idp: Idp, tmp_path: Path) -> None:
    login = start_login(config, tmp_path / "cache", "--print-token")
    idp.control("expire", user_code=login.user_code())
    rc, out, err = login.finish()
    assert rc == 1 and out == ""
    assert "the login code expired before it was approved; run `hoopgw login` again" in err


def test_slow_down_is_honoured(config: Path, idp: Idp, tmp_path: Path) -> None:
    login = start_login(config, tmp_path / "cache", "--print-token")
    code = login.user_code()
    idp.control("slow_down", user_code=code)
    started = time.monotonic()
    time.sleep(1.5)  # the first poll (after 1 s) gets slow_down: the next comes 1 + 5 s later
    idp.control("approve", user_code=code, sub="carol", groups=["dev"])
    rc, out, err = login.finish()
    assert rc == 0, err
    assert time.monotonic() - started > 5
    assert jwt.decode(out.strip(), options={"verify_signature": False})["sub"] == "carol"


def test_timeout(config: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    res = login_cli(config, tmp_path / "cache", "--print-token", "--timeout", "2s")
    assert res.returncode == 1 and res.stdout == ""
    assert "gave up after 2 s without an approved login" in res.stderr
    assert time.monotonic() - started < 20


def test_stale_or_foreign_cache_is_not_used(
    config: Path, idp: Idp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    identity = load_config(config).identity
    path = cache_path(identity)
    path.parent.mkdir(parents=True, mode=0o700)

    def write(token: str, mode: int = 0o600) -> None:
        path.write_bytes(orjson.dumps({"issuer": idp.url, "client_id": "hoopgw", "token": token}))
        os.chmod(path, mode)

    def reuses() -> bool:
        """True if --print-token answered from the cache (a device flow would time out after 2 s)."""
        res = login_cli(config, cache, "--print-token", "--timeout", "2s")
        return res.returncode == 0

    fresh = idp.mint(sub="dave", groups=["dev"])
    write(fresh)
    assert reuses()
    write(fresh, 0o644)  # readable by others: not trusted
    assert not reuses()
    write(idp.mint(sub="dave", exp=int(time.time()) + 20))  # within the 30 s leeway of expiring
    assert not reuses()
    write(idp.mint(sub="dave", iss="https://other.example"))
    assert not reuses()


def test_local_issuer_points_to_token_issue(tmp_path: Path) -> None:
    path = tmp_path / "hoopgw.toml"
    path.write_text('[identity]\nissuer = "local"\n')
    res = login_cli(path, tmp_path / "cache", "--print-token")
    assert res.returncode == 1 and res.stdout == ""
    assert "hoopgw token issue" in res.stderr


def test_unreachable_issuer(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "hoopgw.toml"
    path.write_text(f'[identity]\nissuer = "http://127.0.0.1:{port}"\n')
    res = login_cli(path, tmp_path / "cache", "--print-token")
    assert res.returncode == 1 and res.stdout == ""
    assert f"cannot fetch the issuer's discovery document from http://127.0.0.1:{port}" in res.stderr


def test_help(config: Path) -> None:
    res = run([sys.executable, "-m", "hoopgw", "login", "--help", "-c", str(config)], cwd=REPO_ROOT)
    assert res.returncode == 0
    assert "usage: hoopgw login" in res.stdout and "--print-token" in res.stdout and "-c FILE" in res.stdout
