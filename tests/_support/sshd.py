"""The test suite's OpenSSH server: :class:`hoopgw._sshd.Sshd` plus client commands and fault injection.

:class:`Sshd` (hoopgw/_sshd.py, which ``hoopgw demo`` uses too) generates host keys and a client key pair
into a private temporary directory and runs Debian's ``sshd -D -e`` on a free port of 127.0.0.1. This
subclass adds what only the tests need: ready-made ``ssh`` / ``scp`` / ``sftp`` / ``rsync`` command lines,
an ``ssh_config`` file, killing the sessions while sshd keeps listening, and the accepted logins::

    with Sshd() as sshd:
        run(sshd.ssh_cmd("echo", "hi"))                          # ssh ... -p PORT 127.0.0.1 echo hi
        run(sshd.scp_cmd("-O", "local.bin", sshd.remote("/tmp/x.bin")))
        run(["rsync", "-a", "-e", sshd.rsync_ssh(), "dir/", sshd.remote(str(sshd.workdir / "d"))])

As root (CI) the login is ``root``, otherwise the current user. Every client command is built with
``-F none`` (no user or system ssh_config), ``BatchMode``, the fixture's key only and no agent.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Sequence
from pathlib import Path

from hoopgw import _sshd
from hoopgw._sshd import SshdError, children, find_sshd, fingerprint, process_tree, signal_all

__all__ = ["CLIENT_OPTIONS", "Sshd", "SshdError", "find_sshd", "fingerprint", "process_tree"]

#: Options of every client command: nothing from ~/.ssh, /etc/ssh or an agent; never a prompt.
CLIENT_OPTIONS: tuple[str, ...] = (
    "-F", "none",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "ConnectTimeout=10",
    "-o", "LogLevel=ERROR",
)  # fmt: skip

#: How the client checks the host key by default (the fixture's key changes every run).
_NO_HOST_CHECK: tuple[str, ...] = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null",
)  # fmt: skip


class Sshd(_sshd.Sshd):
    """A private OpenSSH server for tests; see the module docstring and :class:`hoopgw._sshd.Sshd`."""

    key_comment = "hoopgw-test"

    @property
    def ssh_config_path(self) -> Path:
        """An ``ssh_config`` with :meth:`ssh_config_text` (written with the server's config)."""
        return self.base_dir / "ssh_config"

    def _write_client_files(self) -> None:
        """known_hosts, and an ``ssh_config`` for ``ssh -F FILE sshd-test``."""
        super()._write_client_files()
        self.ssh_config_path.write_text(self.ssh_config_text())

    def ssh_config_text(
        self, alias: str = "sshd-test", *, port: int | None = None, user: str | None = None
    ) -> str:
        """An ``ssh_config`` block for ``ssh -F FILE ALIAS`` (host key pinned to :attr:`known_hosts_path`)."""
        return (
            f"Host {alias}\n"
            f"    HostName {self.host}\n"
            f"    Port {port or self.port}\n"
            f"    User {user or self.user}\n"
            f"    IdentityFile {self.client_key}\n"
            "    IdentitiesOnly yes\n"
            "    IdentityAgent none\n"
            "    BatchMode yes\n"
            "    StrictHostKeyChecking yes\n"
            f"    UserKnownHostsFile {self.known_hosts_path}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    LogLevel ERROR\n"
        )

    # ------------------------------------------------------------------------------------------ faults
    def kill_sessions(self) -> list[int]:
        """SIGKILL only the per-connection processes (and their shells); sshd keeps listening."""
        pid = self.pid
        if pid is None:
            return []
        victims = [p for p in self._freeze_tree() if p != pid]
        signal_all([pid], signal.SIGCONT)
        signal_all(victims, signal.SIGKILL)
        self._wait_gone(victims, 5.0)
        return victims

    def connections(self) -> list[int]:
        """PIDs of the processes serving connections now (sshd's direct children)."""
        pid = self.pid
        return [] if pid is None else children().get(pid, [])

    def accepted_logins(self) -> list[str]:
        """``Accepted publickey for USER from ...`` lines of the log."""
        return re.findall(r"^.*Accepted \S+ for .*$", self.log_text(), re.M)

    # ------------------------------------------------------------------------------------------ clients
    def _client_opts(
        self, port: int | None, user: str | None, key: Path | str | None, strict: bool
    ) -> list[str]:
        hosts = (
            [
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts_path}",
                "-o", "GlobalKnownHostsFile=/dev/null",
            ]
            if strict
            else list(_NO_HOST_CHECK)
        )  # fmt: skip
        return [
            *CLIENT_OPTIONS,
            *hosts,
            "-o", f"User={user or self.user}",
            "-o", f"Port={port or self.port}",
            "-i", str(key or self.client_key),
        ]  # fmt: skip

    def ssh_cmd(
        self,
        *args: str,
        port: int | None = None,
        user: str | None = None,
        key: Path | str | None = None,
        options: Sequence[str] = (),
        strict: bool = False,
    ) -> list[str]:
        """``ssh [options] 127.0.0.1 ARGS`` (ARGS is the remote command, may be empty for a shell).

        ``port``/``user``/``key`` default to this server, its login and the fixture's client key (pass
        a gateway's port and user to go through it); ``options`` come before the host (``-tt``,
        ``-c CIPHER``, ``-o SetEnv=...``); ``strict`` checks the host key against :attr:`known_hosts_path`.
        """
        return ["ssh", *self._client_opts(port, user, key, strict), *options, self.host, *args]

    def scp_cmd(
        self,
        *args: str,
        port: int | None = None,
        user: str | None = None,
        key: Path | str | None = None,
        strict: bool = False,
    ) -> list[str]:
        """``scp [opts] ARGS``: ARGS are further options (``-O`` for the legacy protocol) and the
        paths, remote ones written with :meth:`remote`."""
        return ["scp", *self._client_opts(port, user, key, strict), *args]

    def sftp_cmd(
        self,
        *args: str,
        port: int | None = None,
        user: str | None = None,
        key: Path | str | None = None,
        strict: bool = False,
    ) -> list[str]:
        """``sftp [opts] ARGS 127.0.0.1``: ARGS are sftp options, e.g. ``"-b", "batchfile"``."""
        return ["sftp", *self._client_opts(port, user, key, strict), *args, self.host]

    def rsync_ssh(
        self,
        *,
        port: int | None = None,
        user: str | None = None,
        key: Path | str | None = None,
        strict: bool = False,
    ) -> str:
        """The ``-e`` value for ``rsync -e STR SRC 127.0.0.1:DST`` (the user travels in ``-o User=``)."""
        return shlex.join(["ssh", *self._client_opts(port, user, key, strict)])

    def remote(self, path: str | Path) -> str:
        """``127.0.0.1:PATH``, the remote spelling of a path for scp and rsync."""
        return f"{self.host}:{path}"
