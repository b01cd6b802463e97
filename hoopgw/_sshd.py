"""A private OpenSSH server: Debian's ``sshd`` on a free port of 127.0.0.1, with its own keys.

:class:`Sshd` generates host keys (ed25519, rsa) and a client key pair (ed25519) into a private temporary
directory, writes an ``sshd_config`` that knows nothing of ``/etc/ssh`` (public keys from a private
``authorized_keys`` only, no PAM, no passwords, ``StrictModes no``), and runs ``sshd -D -e`` as a child
process. ``hoopgw demo`` puts one behind its ``type = "ssh"`` connection; the test suite's fixture
(``tests/_support/sshd.py``) adds client commands and fault injection on top::

    with Sshd() as sshd:
        ...  # ssh -i sshd.client_key -p sshd.port sshd.user@127.0.0.1

sshd can only log in as the user it runs as unless it runs as root: as root the login is ``root``
(``PermitRootLogin prohibit-password``), otherwise the current user.

Each connection is served by a child that calls ``setsid()``, so killing sshd's process group does not
reach the sessions: :meth:`Sshd.stop` and :meth:`Sshd.kill` freeze and signal the whole process tree
(found through ``/proc``), the way a crashed or rebooted host ends its sessions.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

from hoopgw._pgcluster import free_port

__all__ = [
    "Sshd",
    "SshdError",
    "children",
    "find_sshd",
    "fingerprint",
    "keygen",
    "process_tree",
    "signal_all",
]

#: Options of sshd that only newer OpenSSH releases know; dropped when ``sshd -t`` rejects them.
_OPTIONAL_SETTINGS = {
    # 9.8+: repeated auth failures or dropped connections from 127.0.0.1 would lock out later logins
    "PerSourcePenalties": "no",
}


class SshdError(RuntimeError):
    """The sshd could not be configured, started or stopped."""


def find_sshd() -> Path:
    """``$HOOPGW_SSHD``, ``/usr/sbin/sshd`` or ``sshd`` on PATH (absolute: sshd re-executes itself)."""
    env = os.environ.get("HOOPGW_SSHD")
    candidates = [Path(env)] if env else []
    candidates.append(Path("/usr/sbin/sshd"))
    if found := shutil.which("sshd"):
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.resolve()
    raise SshdError("sshd not found (/usr/sbin/sshd); install openssh-server with `make deps`")


def keygen(path: Path, kind: str, comment: str) -> None:
    """An unencrypted key pair ``path`` and ``path.pub`` (``ssh-keygen -t KIND``)."""
    bits = ["-b", "2048"] if kind == "rsa" else []
    res = subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if res.returncode != 0:
        raise SshdError(f"ssh-keygen -t {kind} failed: {res.stderr.strip()}")


def fingerprint(public_key: Path | str) -> str:
    """``SHA256:...`` of a public key file (``ssh-keygen -lf``)."""
    res = subprocess.run(
        ["ssh-keygen", "-E", "sha256", "-lf", str(public_key)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if res.returncode != 0:
        raise SshdError(f"ssh-keygen -lf {public_key} failed: {res.stderr.strip()}")
    return res.stdout.split()[1]


def children() -> dict[int, list[int]]:
    """Parent PID -> child PIDs of every process we can see in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now, parents first."""
    tree = children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        if pid in out:
            continue
        out.append(pid)
        todo.extend(tree.get(pid, ()))
    return out


def signal_all(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each of ``pids`` that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Sshd:
    """A private OpenSSH server; see the module docstring.

    Args:
        base_dir: where keys, config, log and :attr:`workdir` live (a fresh ``mkdtemp`` by default,
            removed by :meth:`stop` only when created here).
        port: TCP port on 127.0.0.1 (a free one by default; re-picked if it was taken meanwhile).
        settings: extra ``sshd_config`` lines as ``{"Keyword": "value"}``, overriding the defaults.
        rsa: also generate and serve an RSA host key.
    """

    host = "127.0.0.1"
    #: comment of the generated keys: ``NAME-host`` on host keys, ``USER@NAME`` on the client key
    key_comment = "hoopgw-sshd"

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        rsa: bool = True,
    ) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="hoopgw-sshd-")).resolve()
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.rsa = rsa
        self.sshd_bin = find_sshd()
        #: The login name: sshd running as root logs anybody in, otherwise only the user it runs as.
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.config_path = self.base_dir / "sshd_config"
        self.log_path = self.base_dir / "sshd.log"
        self.pid_path = self.base_dir / "sshd.pid"
        self.host_key = self.base_dir / "ssh_host_ed25519_key"
        self.host_key_rsa = self.base_dir / "ssh_host_rsa_key"
        self.client_key = self.base_dir / "id_ed25519"
        self.authorized_keys = self.base_dir / "authorized_keys"
        self.known_hosts_path = self.base_dir / "known_hosts"
        #: Files clients upload, download and compare; the logged-in user may write here.
        self.workdir = self.base_dir / "work"
        self.host_key_fingerprint = ""
        self.host_public_key = ""  # "ssh-ed25519 AAAA..." (no comment)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self._optional = dict(_OPTIONAL_SETTINGS)

    def __repr__(self) -> str:
        return f"Sshd(port={self.port}, pid={self.pid}, user={self.user!r}, dir={str(self.base_dir)!r})"

    # ------------------------------------------------------------------------------------------ setup
    def _setup(self) -> None:
        """Keys, authorized_keys and workdir (once per base_dir), then config and known_hosts."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)  # noqa: S103 - keys inside are 0600; sessions cd into workdir
        self.workdir.mkdir(exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "ed25519", f"{self.key_comment}-host")
        if self.rsa and not self.host_key_rsa.exists():
            keygen(self.host_key_rsa, "rsa", f"{self.key_comment}-host")
        if not self.client_key.exists():
            keygen(self.client_key, "ed25519", f"{self.user}@{self.key_comment}")
            self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
            os.chmod(self.authorized_keys, 0o600)
        self.host_key_fingerprint = fingerprint(self.host_key.with_suffix(".pub"))
        self.host_public_key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        if os.geteuid() == 0:
            # the privilege separation directory; the package creates it only when the service starts
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self._write_config()

    def config_lines(self) -> list[str]:
        """The ``sshd_config`` of this server."""
        conf: dict[str, str] = {
            "ListenAddress": f"{self.host}:{self.port}",
            "PidFile": str(self.pid_path),
            "StrictModes": "no",
            "UsePAM": "no",
            "PubkeyAuthentication": "yes",
            "AuthorizedKeysFile": str(self.authorized_keys),
            "AuthorizedPrincipalsFile": "none",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "HostbasedAuthentication": "no",
            "PermitRootLogin": "prohibit-password",
            "PermitEmptyPasswords": "no",
            "Subsystem": "sftp internal-sftp",
            "AcceptEnv": "HOOP_PROMPT_ID LANG",
            "AllowTcpForwarding": "yes",
            "AllowAgentForwarding": "yes",
            "X11Forwarding": "no",
            "PermitTTY": "yes",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "UseDNS": "no",
            "LogLevel": "VERBOSE",
            "MaxSessions": "50",
            "MaxStartups": "100:30:200",
            "MaxAuthTries": "10",
            "LoginGraceTime": "30",
            **self._optional,
            **self.settings,
        }
        keys = [f"HostKey {self.host_key}"]
        if self.rsa:
            keys.append(f"HostKey {self.host_key_rsa}")
        head = f"# hoopgw sshd ({type(self).__module__}.{type(self).__qualname__})"
        return [head, *keys, *(f"{k} {v}" for k, v in conf.items())]

    def _write_config(self) -> None:
        for _ in range(len(_OPTIONAL_SETTINGS) + 1):
            self.config_path.write_text("\n".join(self.config_lines()) + "\n")
            res = subprocess.run(
                [str(self.sshd_bin), "-t", "-f", str(self.config_path)],
                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if res.returncode == 0:
                break
            unknown = [k for k in self._optional if k in res.stderr]
            if not unknown:
                raise SshdError(f"sshd -t rejects {self.config_path}: {res.stderr.strip()}")
            for k in unknown:
                del self._optional[k]
        self._write_client_files()

    def _write_client_files(self) -> None:
        """Files for clients, rewritten with the config: :attr:`known_hosts_path` pins the host keys."""
        lines = [f"[{self.host}]:{self.port} {self.host_public_key}"]
        if self.rsa:
            rsa_pub = " ".join(self.host_key_rsa.with_suffix(".pub").read_text().split()[:2])
            lines.append(f"[{self.host}]:{self.port} {rsa_pub}")
        self.known_hosts_path.write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------------------------------ life
    @property
    def pid(self) -> int | None:
        """PID of the listening sshd while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 20.0) -> Self:
        """Write keys and config (first time) and start sshd; return once it sends its ``SSH-2.0-`` banner."""
        if self.running:
            return self
        self._setup()
        for _attempt in range(5):
            with self.log_path.open("ab") as log:
                self._log_start = log.tell()
                self._proc = subprocess.Popen(
                    [str(self.sshd_bin), "-D", "-e", "-f", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                    cwd=self.base_dir,
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                return self
            # the port was taken between free_port() and sshd's bind: pick another one
            self._reap()
            if self._fixed_port:
                break
            self.port = free_port()
            self._write_config()
        raise SshdError(f"sshd did not start on {self.host}:{self.port}:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        """True once the banner arrives; False if sshd could not bind; SshdError otherwise."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                if "Address already in use" in self.log_text()[self._log_start :]:
                    return False
                raise SshdError(f"sshd exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.banner(timeout=1.0).startswith("SSH-2.0-"):
                return True
            time.sleep(0.05)
        self.kill()
        raise SshdError(f"sshd sent no banner within {timeout} s:\n{self.log_tail()}")

    def banner(self, timeout: float = 2.0) -> str:
        """The identification line the server sends first ('' when nothing answers)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as s:
                data = b""
                while b"\n" not in data and len(data) < 256:
                    chunk = s.recv(256)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return ""
        return data.decode("ascii", "replace").strip()

    def _reap(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)

    def _freeze_tree(self) -> list[int]:
        """SIGSTOP sshd and every descendant (repeated until no new process appears); return them."""
        pid = self.pid
        if pid is None:
            return []
        seen: list[int] = []
        for _ in range(10):
            new = [p for p in process_tree(pid) if p not in seen]
            if not new:
                break
            signal_all(new, signal.SIGSTOP)
            seen.extend(new)
        return seen

    def stop(self, timeout: float = 10.0, *, remove: bool | None = None) -> int | None:
        """SIGTERM sshd and all its connections (their shells too), SIGKILL what is left after
        ``timeout``; remove the directory when this object created it (or ``remove=True``).

        Return sshd's exit status (None if it was not running).
        """
        code = self._terminate(signal.SIGTERM, timeout)
        if remove if remove is not None else self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        return code

    def kill(self) -> int | None:
        """SIGKILL sshd and every process serving a connection, at once: the host "crashed".

        Clients see their TCP connections close (the kernel resets or closes them); files stay for
        :meth:`log_text` and a later :meth:`start` (same port, same keys).
        """
        return self._terminate(signal.SIGKILL, 5.0)

    def _terminate(self, sig: int, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        pids = self._freeze_tree()
        signal_all(pids, sig)
        signal_all(pids, signal.SIGCONT)  # stopped processes act on SIGTERM only once continued
        if not self._wait_gone(pids, timeout):
            signal_all(pids, signal.SIGKILL)
            self._wait_gone(pids, 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)
        self._proc = None
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        return proc.returncode

    def _wait_gone(self, pids: Sequence[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        own = self._proc.pid if self._proc is not None else None
        while True:
            if own is not None and self._proc is not None:
                self._proc.poll()  # reap our child so it does not linger as a zombie
            if not any(alive(p) for p in pids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """sshd's log so far (``-e``: everything it logs, at ``LogLevel VERBOSE``)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no sshd log)"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
