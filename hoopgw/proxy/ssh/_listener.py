"""The listening socket of one or more ``type = "ssh"`` connections, and the gateway's host key."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from hoopgw import _core
from hoopgw.proxy.ssh._server import SshClientConnection
from hoopgw.proxy.ssh._tuning import CIPHERS_WITHOUT_CBC
from hoopgw.proxy.ssh._tuning import install as install_tuning

if TYPE_CHECKING:
    from hoopgw.config import SshConnection
    from hoopgw.server import Gateway

log = logging.getLogger("hoopgw.ssh")
# asyncssh logs every connection and channel at INFO; the gateway's own records say what matters
logging.getLogger("asyncssh").setLevel(logging.WARNING)

HOST_KEY_FILE = "ssh_host_ed25519_key"
#: how long the SSH handshake and authentication may take
_LOGIN_TIMEOUT_S = 30.0


def host_key_path(gateway: Gateway) -> Path:
    """The gateway's SSH host key file: ``[ssh] host_key``, else data_dir/ssh_host_ed25519_key."""
    configured = getattr(getattr(gateway.config, "ssh", None), "host_key", None)
    return Path(configured) if configured is not None else gateway.config.gateway.data_dir / HOST_KEY_FILE


def load_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key, generating an Ed25519 one (0600, written atomically) on first run."""
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="hoopgw gateway host key")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key.export_private_key())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replace a key another process wrote meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
        log.info("generated the SSH host key", extra={"path": str(path)})
    return asyncssh.read_private_key(str(path))


class SshListener:
    """Accepts OpenSSH clients on one address for the ssh connections that listen there.

    With several connections on one port, the SSH user name picks one: ``NAME@CONNECTION`` or
    ``CONNECTION`` (docs/SSH.md).
    """

    def __init__(self, gateway: Gateway, cfgs: list[SshConnection], maskers: dict[str, _core.Masker]) -> None:
        self.gateway = gateway
        self.cfgs = {c.name: c for c in cfgs}
        self.cfg = cfgs[0]
        self.maskers = maskers
        self.sessions: set[SshClientConnection] = set()
        self._server: asyncssh.SSHAcceptor | None = None

    @property
    def names(self) -> list[str]:
        return list(self.cfgs)

    def connection_for(self, username: str) -> SshConnection | None:
        """The connection a login names: the only one on this port, or the part after the last ``@``
        (or the whole user name) naming one of them."""
        if len(self.cfgs) == 1:
            return self.cfg
        name = username.rpartition("@")[2]
        return self.cfgs.get(name)

    async def start(self) -> None:
        install_tuning()
        key = await asyncio.to_thread(load_host_key, host_key_path(self.gateway))
        listen = self.cfg.listen
        self._server = await asyncssh.create_server(
            lambda: SshClientConnection(self),
            listen.host,
            listen.port,
            server_host_keys=[key],
            encryption_algs=CIPHERS_WITHOUT_CBC,
            backlog=1024,
            reuse_address=True,
            login_timeout=_LOGIN_TIMEOUT_S,
            agent_forwarding=True,  # each request is decided (and recorded) by the connection
            x11_forwarding=False,
            allow_scp=False,
            line_editor=False,
            encoding=None,
            kbdint_auth=False,
            gss_host=None,
            host_based_auth=False,
            keepalive_interval=60,
            server_version="hoopgw",
        )
        log.info(
            "listening", extra={"connection": ",".join(self.cfgs), "listen": f"{listen}", "protocol": "ssh"}
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def drain(self) -> None:
        for session in list(self.sessions):
            session.drain()

    async def wait_sessions(self, within: float) -> bool:
        """Wait until every client connection has ended; False when ``within`` seconds passed first."""
        deadline = asyncio.get_running_loop().time() + within
        while self.sessions:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def terminate_all(self, sqlstate: str, message: str) -> None:
        for session in list(self.sessions):
            session.terminate(sqlstate, message)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
