"""Debian's PgBouncer as a benchmark peer: transaction pooling, client TLS required, SCRAM for clients."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

from hoopgw._pgcluster import TempCluster, free_port, make_self_signed_cert
from hoopgw.demo import tcp_accepts


def find_pgbouncer() -> str:
    path = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if path is None:
        raise RuntimeError("pgbouncer not found; run `make deps`")
    return path


def pgbouncer_version() -> str:
    out = subprocess.run([find_pgbouncer(), "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0].strip() if out else "unknown"


class PgBouncer:
    """PgBouncer in front of ``cluster`` for database ``db``, logging in upstream as ``user``.

    It refuses to run as root, so it runs as the cluster's OS user, from a directory that user owns.
    """

    def __init__(
        self,
        cluster: TempCluster,
        *,
        db: str,
        user: str,
        password: str,
        pool_size: int = 16,
        server_sslmode: str = "disable",
    ) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.dir = cluster.base_dir / "pgbouncer"
        self.dir.mkdir(exist_ok=True)
        cluster.chown(self.dir)
        cert, key = self.dir / "client.crt", self.dir / "client.key"
        make_self_signed_cert(cert, key)
        userlist = self.dir / "userlist.txt"
        userlist.write_text(f'"{user}" "{password}"\n')
        userlist.chmod(0o600)
        self.ini = self.dir / "pgbouncer.ini"
        self.log = self.dir / "pgbouncer.log"
        self.ini.write_text(
            f"""[databases]
{db} = host={cluster.host} port={cluster.port} dbname={db}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {userlist}
pool_mode = transaction
max_client_conn = 200
default_pool_size = {pool_size}
client_tls_sslmode = require
client_tls_cert_file = {cert}
client_tls_key_file = {key}
server_tls_sslmode = {server_sslmode}
ignore_startup_parameters = extra_float_digits
logfile = {self.log}
log_connections = 0
log_disconnections = 0
"""
        )
        for f in (cert, key, userlist, self.ini):
            cluster.chown(f)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [find_pgbouncer(), str(self.ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.cluster.server_env(),
            cwd=self.dir,
            start_new_session=True,
            **self.cluster.run_as_kwargs(),  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + timeout
        while not tcp_accepts("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"pgbouncer did not start:\n{tail}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
