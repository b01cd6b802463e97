"""A throwaway PostgreSQL server for tests, benchmarks and ``hoopgw demo``.

:class:`TempCluster` runs ``initdb`` into a private temporary directory and starts ``postgres`` on a
private TCP port (``127.0.0.1`` only) and a unix socket inside that directory, with TLS on (a self-signed
certificate for ``localhost`` / ``127.0.0.1`` made here) and SCRAM-SHA-256 as the default password
encryption. PostgreSQL refuses to run as root, so when the caller is root the server runs as the
``postgres`` OS user (the Debian package creates it).

Roles are declared with :class:`Role`; each role gets its own ``pg_hba.conf`` line so that one cluster can
exercise every upstream authentication method the gateway brokers::

    with TempCluster() as pg:
        pg.add_role(Role("app", password="s3cret"))                 # host ... scram-sha-256
        pg.add_role(Role("md5user", password="x", auth="md5"))      # host ... md5
        pg.add_role(Role("trustuser", auth="trust"))                # host ... trust
        pg.add_role(Role("ssluser", password="y", ssl_only=True))   # hostssl only
        pg.create_database("bank", owner="app")
        print(pg.psql("select 1", db="bank"))

The bootstrap superuser ``postgres`` logs in over the unix socket without a password (``local ... trust``);
TCP logins of unknown roles need SCRAM.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "ClusterError",
    "Role",
    "TempCluster",
    "conninfo",
    "find_pg_bindir",
    "free_port",
    "make_self_signed_cert",
]

AuthMethod = Literal["scram-sha-256", "md5", "trust", "password"]

#: Unix socket paths are limited to 107 bytes on Linux (``.s.PGSQL.NNNNN`` included).
_MAX_SOCKET_DIR_LEN = 90


class ClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or queried."""


@dataclass(frozen=True)
class Role:
    """A login role and how it authenticates over TCP.

    ``auth`` is the ``pg_hba.conf`` method of the role's host line; the password is stored with the
    matching encryption (``md5`` roles get an MD5 hash, everyone else SCRAM). ``ssl_only`` makes the line
    ``hostssl`` and adds a ``hostnossl ... reject`` so the role cannot log in without TLS.
    """

    name: str
    password: str | None = None
    auth: AuthMethod = "scram-sha-256"
    ssl_only: bool = False
    superuser: bool = False

    def __repr__(self) -> str:  # never show the password
        return f"Role(name={self.name!r}, auth={self.auth!r}, ssl_only={self.ssl_only})"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _conninfo_quote(value: str) -> str:
    if value and not any(c in value for c in " '\\\t\n\r"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(**params: str | int | None) -> str:
    """Build a libpq ``key=value`` connection string; None values are left out, values are quoted."""
    return " ".join(f"{k}={_conninfo_quote(str(v))}" for k, v in params.items() if v is not None)


def sql_literal(value: str) -> str:
    """Quote a SQL string literal (standard_conforming_strings=on)."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """Quote a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def find_pg_bindir() -> Path:
    """Locate the PostgreSQL server binaries (``initdb``, ``postgres``).

    Order: ``$HOOPGW_PG_BINDIR``, ``pg_config --bindir`` when it holds ``initdb``, the newest
    ``/usr/lib/postgresql/*/bin``, then ``initdb`` on ``PATH``.
    """
    candidates: list[Path] = []
    env = os.environ.get("HOOPGW_PG_BINDIR")
    if env:
        candidates.append(Path(env))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))

    def version_key(p: Path) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in p.parent.name.split("."))
        except ValueError:
            return (0,)

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    raise ClusterError(
        "PostgreSQL server binaries not found (looked for initdb and postgres in pg_config --bindir and "
        "/usr/lib/postgresql/*/bin); install them with `make deps` (Debian package `postgresql`)"
    )


def make_self_signed_cert(
    cert_path: Path, key_path: Path, *, common_name: str = "localhost", days: int = 30
) -> None:
    """Write a self-signed P-256 certificate for ``localhost`` and ``127.0.0.1`` (PEM, key mode 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without libpq's PG* variables (so nothing leaks in by accident)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


class TempCluster:
    """A private PostgreSQL server in a temporary directory; see the module docstring.

    Args:
        base_dir: where to create the cluster (a fresh ``mkdtemp`` by default; removed on :meth:`stop`
            only when it was created here). When running as root it must be reachable by ``postgres``.
        port: TCP port on 127.0.0.1 (a free one by default).
        fsync: keep ``fsync`` on. Off (the default) is only for throwaway test and demo data.
        settings: extra ``postgresql.conf`` settings, e.g. ``{"shared_buffers": "256MB"}``.
        start_timeout: bound on ``initdb`` and on waiting for the server to accept connections.
    """

    superuser = "postgres"

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        port: int | None = None,
        fsync: bool = False,
        settings: Mapping[str, str | int | bool] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self._owns_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="hoopgw-pg-")).resolve()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.fsync = fsync
        self.settings: dict[str, str | int | bool] = dict(settings or {})
        self.start_timeout = start_timeout
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.cert_path = self.base_dir / "data" / "server.crt"
        self._own_socket_dir: Path | None = None
        sock = self.base_dir / "sock"
        if len(str(sock)) > _MAX_SOCKET_DIR_LEN:
            self._own_socket_dir = Path(tempfile.mkdtemp(prefix="hoopgw-pgs-"))
            sock = self._own_socket_dir
        self.socket_dir = sock
        self.roles: dict[str, Role] = {}
        self.bindir = find_pg_bindir()
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as = self._os_user()

    # ------------------------------------------------------------------------------------------ setup

    @staticmethod
    def _os_user() -> pwd.struct_passwd | None:
        """The OS account to run the server as: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise ClusterError("running as root but there is no `postgres` OS user; run `make deps`")

    def chown(self, path: Path) -> None:
        """Give ``path`` to the OS user the server runs as (a no-op unless we are root)."""
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def run_as_kwargs(self) -> dict[str, object]:
        """``subprocess.Popen`` keyword arguments that run a child as the server's OS user."""
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}

    def server_env(self) -> dict[str, str]:
        """Environment for children run as the server's OS user (no PG* variables)."""
        env = _clean_env()
        if self._run_as is not None:
            env["HOME"] = self._run_as.pw_dir
            env["USER"] = env["LOGNAME"] = self._run_as.pw_name
        return env

    def _initdb(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.chown(self.base_dir)
        self.chown(self.socket_dir)
        os.chmod(self.socket_dir, 0o700)
        cmd = [
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        try:
            subprocess.run(
                cmd,
                capture_output=True,
                check=True,
                timeout=self.start_timeout,
                env=self.server_env(),
                cwd=self.base_dir,
                **self.run_as_kwargs(),  # type: ignore[call-overload]
            )
        except subprocess.CalledProcessError as e:
            raise ClusterError(f"initdb failed ({e.returncode}): {e.stderr.decode(errors='replace')}") from e
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"initdb took longer than {self.start_timeout} s") from e
        make_self_signed_cert(self.cert_path, self.data_dir / "server.key")
        self.chown(self.cert_path)
        self.chown(self.data_dir / "server.key")
        conf: dict[str, str | int | bool] = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "ssl": True,
            "ssl_cert_file": "server.crt",
            "ssl_key_file": "server.key",
            "password_encryption": "scram-sha-256",
            "max_connections": 200,
            "fsync": self.fsync,
            "logging_collector": False,
            "log_min_messages": "warning",
            "log_line_prefix": "%m [%p] %u@%d ",
            "dynamic_shared_memory_type": "posix",
        }
        if not self.fsync:
            conf.update({"synchronous_commit": False, "full_page_writes": False})
        conf.update(self.settings)
        lines = ["", "# --- hoopgw TempCluster ---"]
        for k, v in conf.items():
            if isinstance(v, bool):
                val = "on" if v else "off"
            elif isinstance(v, int):
                val = str(v)
            else:
                val = sql_literal(v)
            lines.append(f"{k} = {val}")
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write("\n".join(lines) + "\n")
        self._write_hba()

    def _write_hba(self) -> None:
        lines = [
            "# hoopgw TempCluster: one line per declared role, then defaults",
            f"local all {self.superuser} trust",
            "local all all trust",
        ]
        for role in self.roles.values():
            if role.ssl_only:
                lines.append(f"hostnossl all {role.name} 127.0.0.1/32 reject")
                lines.append(f"hostssl all {role.name} 127.0.0.1/32 {role.auth}")
            else:
                lines.append(f"host all {role.name} 127.0.0.1/32 {role.auth}")
        lines.append("host all all 127.0.0.1/32 scram-sha-256")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("\n".join(lines) + "\n")
        self.chown(hba)

    # ------------------------------------------------------------------------------------------ life

    @property
    def pid(self) -> int | None:
        """PID of the postmaster while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> Self:
        """initdb (first time only) and start the server; return when it accepts connections."""
        if self.running:
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.server_env(),
                cwd=self.base_dir,
                start_new_session=True,  # a terminal's Ctrl-C goes to the owner, who stops us in order
                **self.run_as_kwargs(),  # type: ignore[call-overload]
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        pidfile = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ClusterError(f"postgres exited with {self._proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                lines = pidfile.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            time.sleep(0.05)
        self.stop()
        raise ClusterError(f"postgres not ready after {self.start_timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0, *, remove: bool | None = None) -> None:
        """Fast shutdown (SIGINT to the postmaster), then SIGQUIT/SIGKILL if it takes too long.

        The directory is removed when this object created it (or ``remove=True``).
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
            proc.wait(5.0)
        if remove if remove is not None else self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._own_socket_dir is not None and (remove if remove is not None else True):
            shutil.rmtree(self._own_socket_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # ------------------------------------------------------------------------------------------ use

    def psql(
        self,
        sql: str,
        *,
        db: str = "postgres",
        user: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> str:
        """Run SQL with ``psql`` over the unix socket (trusted); return unaligned, tuples-only output.

        Several statements may be given; psql stops at the first error (``ON_ERROR_STOP``) and a
        :class:`ClusterError` carries its message when ``check`` is true.
        """
        cmd = [
            str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port),
            "-U", user or self.superuser, "-d", db, "-f", "-",
        ]  # fmt: skip
        try:
            res = subprocess.run(
                cmd, input=sql, capture_output=True, text=True, timeout=timeout, env=_clean_env()
            )
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"psql took longer than {timeout} s") from e
        if check and res.returncode != 0:
            raise ClusterError(f"psql failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.rstrip("\n")

    def add_role(self, role: Role, *, grant: bool = True) -> Role:
        """Create (or update) a login role and give it its own ``pg_hba.conf`` line (reloaded at once)."""
        enc = "md5" if role.auth == "md5" else "scram-sha-256"
        attrs = "LOGIN SUPERUSER" if role.superuser else "LOGIN"
        pw = f" PASSWORD {sql_literal(role.password)}" if role.password is not None else ""
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {sql_literal(role.name)}")  # noqa: S608
        verb = "ALTER" if exists else "CREATE"
        self.psql(
            f"SET password_encryption = {sql_literal(enc)};\n{verb} ROLE {sql_ident(role.name)} {attrs}{pw};"
        )
        self.roles[role.name] = role
        self._write_hba()
        self.psql("SELECT pg_reload_conf()")
        return role

    def create_database(self, name: str, owner: str | None = None) -> None:
        """CREATE DATABASE (optionally owned by ``owner``); the owner also gets the public schema."""
        own = f" OWNER {sql_ident(owner)}" if owner else ""
        self.psql(f"CREATE DATABASE {sql_ident(name)}{own}")
        if owner:
            self.psql(f"ALTER SCHEMA public OWNER TO {sql_ident(owner)}", db=name)

    def kill_backends(self, *, db: str | None = None, user: str | None = None) -> int:
        """Terminate client backends (other than our own), optionally only for ``db``/``user``."""
        cond = ["pid <> pg_backend_pid()", "backend_type = 'client backend'"]
        if db is not None:
            cond.append(f"datname = {sql_literal(db)}")
        if user is not None:
            cond.append(f"usename = {sql_literal(user)}")
        out = self.psql(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {' AND '.join(cond)}"  # noqa: S608
        )
        return int(out or 0)

    def backends(self, *, db: str | None = None) -> list[tuple[int, str, str, str]]:
        """(pid, user, database, application_name) of client backends other than our own."""
        where = "pid <> pg_backend_pid() AND backend_type = 'client backend'"
        if db is not None:
            where += f" AND datname = {sql_literal(db)}"
        query = "SELECT pid, usename, datname, coalesce(application_name, '') FROM pg_stat_activity"
        out = self.psql(f"{query} WHERE {where} ORDER BY pid")
        rows: list[tuple[int, str, str, str]] = []
        for line in out.splitlines():
            pid, usr, dbn, app = line.split("|", 3)
            rows.append((int(pid), usr, dbn, app))
        return rows

    def dsn(
        self,
        user: str | None = None,
        *,
        db: str = "postgres",
        password: str | None = None,
        sslmode: str = "prefer",
        unix: bool = False,
        **extra: str | int | None,
    ) -> str:
        """A libpq conninfo string for this server (TCP by default, the unix socket with ``unix=True``).

        The password of a declared role is filled in unless ``password`` is given.
        """
        name = user or self.superuser
        if password is None and name in self.roles:
            password = self.roles[name].password
        return conninfo(
            host=str(self.socket_dir) if unix else self.host,
            port=self.port,
            dbname=db,
            user=name,
            password=password,
            sslmode=None if unix else sslmode,
            **extra,
        )

    def url(self, user: str, *, db: str = "postgres", sslmode: str = "prefer") -> str:
        """A ``postgresql://`` URL without the password (for a gateway's ``upstream`` key)."""
        return f"postgresql://{user}@{self.host}:{self.port}/{db}?sslmode={sslmode}"

    @staticmethod
    def random_password() -> str:
        """A URL-safe random password."""
        return secrets.token_urlsafe(18)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the server (keeping its data) inside the block and start it again afterwards."""
        owns = self._owns_dir
        self.stop(remove=False)
        try:
            yield
        finally:
            self._owns_dir = owns
            self.start()
