"""The REAL gateway under test: a ``python -m hoopgw serve`` child process on free ports.

:class:`Gateway` writes a TOML config (DESIGN.md "The face") whose Postgres connections point at the test
cluster, with upstream passwords as ``env:`` references handed to the child's environment only.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoopgw._pgcluster import conninfo, free_port
from hoopgw.demo import GatewayProcess, toml_dumps

from .pg import TestPg
from .procs import clean_env, require_binary, run

__all__ = ["DEFAULT_POLICY", "Gateway", "PgConn", "default_connections"]

#: The policy of a test gateway whose test passes none: groups dev, ops and dba may do anything.
DEFAULT_POLICY: dict[str, Any] = {
    "name": "tests",
    "subjects": ["group:dev", "group:ops", "group:dba"],
    "connections": ["*"],
    "allow": ["*"],
}


@dataclass(frozen=True)
class PgConn:
    """One ``type = "postgres"`` connection of the gateway under test.

    ``role`` is the upstream role the gateway logs in as (its password comes from the test cluster);
    ``options`` are extra keys of the ``[[connections]]`` table.
    """

    name: str = "bankdb"
    role: str = "app"
    sslmode: str = "prefer"
    database: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


def default_connections() -> list[PgConn]:
    """``bankdb`` as app (SCRAM): enough for most tests."""
    return [PgConn()]


def _env_name(conn: str) -> str:
    return "TEST_UPSTREAM_PW_" + re.sub(r"[^A-Za-z0-9]", "_", conn).upper()


class Gateway:
    """A configured gateway child process (see :meth:`start`)."""

    def __init__(
        self,
        workdir: Path,
        pg: TestPg,
        connections: Sequence[PgConn] | None = None,
        *,
        gateway: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        ssh: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """``ssh``: ``type = "ssh"`` connection tables (without ``listen``, unless they share one:
        each gets a free port of its own)."""
        self.workdir = workdir
        self.pg = pg
        self.connections = list(connections if connections is not None else default_connections())
        self.data_dir = workdir / "var"
        self.config_path = workdir / "hoopgw.toml"
        self.log_path = workdir / "gateway.log"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self._ports = {c.name: free_port() for c in self.connections}
        ssh_conns: list[dict[str, Any]] = []
        for table in ssh:
            ssh_entry: dict[str, Any] = {"type": "ssh", **table}
            name = str(ssh_entry["name"])
            if "listen" not in ssh_entry:
                self._ports[name] = free_port()
                ssh_entry["listen"] = f"127.0.0.1:{self._ports[name]}"
            else:
                self._ports[name] = int(str(ssh_entry["listen"]).rpartition(":")[2])
            ssh_conns.append(ssh_entry)
        self.env: dict[str, str] = dict(env or {})
        conns: list[dict[str, Any]] = []
        for c in self.connections:
            entry: dict[str, Any] = {
                "name": c.name,
                "type": "postgres",
                "listen": f"127.0.0.1:{self._ports[c.name]}",
                "upstream": pg.url(c.role, sslmode=c.sslmode, db=c.database),
            }
            password = pg.password(c.role)
            if password is not None:
                self.env[_env_name(c.name)] = password
                entry["password"] = f"env:{_env_name(c.name)}"
            entry.update(c.options)
            conns.append(entry)
        self.doc: dict[str, Any] = {
            "gateway": {
                "data_dir": str(self.data_dir),
                "api_listen": f"127.0.0.1:{self.api_port}",
                "shutdown_timeout": 5,
                **(gateway or {}),
            },
            "identity": {"issuer": "local", "audience": "hoopgw", **(identity or {})},
            "connections": conns + ssh_conns,
            **(extra or {}),
        }
        if "policy" not in self.doc:
            # No policy means no access: unless a test brings its own, the usual test groups may do anything.
            self.doc["policy"] = [DEFAULT_POLICY]
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(toml_dumps(self.doc))
        self.process = GatewayProcess(
            config_path=self.config_path,
            api=("127.0.0.1", self.api_port),
            listens=[("127.0.0.1", p) for p in sorted(set(self._ports.values()))],
            log_path=self.log_path,
            env={"PYTHONPATH": clean_env()["PYTHONPATH"], **self.env},
        )
        self._tokens: dict[tuple[str, tuple[str, ...], str | None], str] = {}

    # ------------------------------------------------------------------------------------------ life
    def start(self, timeout: float = 20.0) -> Gateway:
        """Start ``python -m hoopgw serve`` and wait for /healthz and every listen port (bounded)."""
        self.process.start(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, bounded wait, then SIGKILL; return the exit status."""
        return self.process.stop(timeout)

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.proc.pid if self.process.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def log_text(self) -> str:
        return self.process.log_text()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    # ------------------------------------------------------------------------------------------ use
    def port(self, conn: str = "bankdb") -> int:
        """The listen port of connection ``conn``."""
        return self._ports[conn]

    def cli(self, *args: str) -> list[str]:
        """``python -m hoopgw ARGS -c CONFIG``."""
        return self.process.cli(*args)

    def run_cli(self, *args: str, timeout: float = 60.0, env: Mapping[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run a ``hoopgw`` subcommand against this gateway's config (bounded)."""
        return run(self.cli(*args), env={**self.env, **(env or {})}, timeout=timeout)

    def token(self, subject: str = "alice", groups: Sequence[str] = ("dev",), ttl: str | None = None) -> str:
        """A local-issuer token from ``hoopgw token issue`` (cached per subject/groups/ttl)."""
        key = (subject, tuple(groups), ttl)
        if key not in self._tokens:
            self._tokens[key] = self.process.token(subject, groups, ttl)
        return self._tokens[key]

    def conninfo(
        self,
        conn: str = "bankdb",
        *,
        user: str = "alice",
        password: str | None = None,
        groups: Sequence[str] = ("dev",),
        dbname: str = "bank",
        sslmode: str | None = "require",
        **extra: str | int | None,
    ) -> str:
        """``host=127.0.0.1 port=P dbname=bank user=alice sslmode=require password=TOKEN`` (plus ``extra``).

        The password defaults to a fresh token for ``user`` with ``groups``; pass ``password=""`` for none.
        """
        if password is None:
            password = self.token(user, groups)
        return conninfo(
            host="127.0.0.1",
            port=self.port(conn),
            dbname=dbname,
            user=user,
            sslmode=sslmode,
            password=password or None,
            connect_timeout=10,
            **extra,
        )

    def psql_cmd(self, *args: str, conn: str = "bankdb", **conninfo_kw: Any) -> list[str]:
        """A psql command line through the gateway: ``psql -X -v ON_ERROR_STOP=1 CONNINFO ARGS``."""
        return [
            require_binary("psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            self.conninfo(conn, **conninfo_kw),
            *args,
        ]

    def psql(
        self, sql: str, *args: str, conn: str = "bankdb", timeout: float = 60.0, **conninfo_kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` (stdin) with psql through the gateway, unaligned and tuples only; bounded."""
        cmd = self.psql_cmd("-q", "-A", "-t", "-f", "-", *args, conn=conn, **conninfo_kw)
        return run(cmd, input=sql, timeout=timeout)

    def __repr__(self) -> str:
        return f"Gateway(config={self.config_path}, ports={self._ports}, api={self.api_url})"

    def describe(self) -> str:
        """A shell line to re-run this gateway by hand (for debugging a failed test)."""
        envs = " ".join(f"{k}=..." for k in self.env)
        return f"{envs} {shlex.join(self.cli('serve'))}"
