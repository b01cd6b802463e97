"""The REAL gateway in front of the test sshd, and OpenSSH client commands pointed at it.

:class:`SshGateway` starts a gateway (tests/_support/gateway.py) whose ``bankhost`` connection is an
ssh connection to :class:`~tests._support.sshd.Sshd` with the sshd's client key as the brokered
credential and its host key pinned, registers SSH keys for test people through the real CLI, and
builds ``ssh`` / ``scp`` / ``sftp`` / ``rsync`` commands for the gateway's port.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from .gateway import Gateway
from .pg import TestPg
from .procs import wait_until
from .sshd import Sshd

__all__ = ["SSH_POLICY", "SshGateway"]

#: people of the tests and their groups
PEOPLE = {"alice": ("dev",), "bob": ("ops",), "carol": ("dev",)}

#: The policy of the SSH tests: dev may run commands, shells and transfers, never destructive ones nor
#: writes under /etc; `touch *approval*` is held for ops; forwarding only to one port.
SSH_POLICY: list[dict[str, Any]] = [
    {
        "name": "ssh-dev",
        "subjects": ["group:dev", "group:ops"],
        "connections": ["bankhost"],
        "allow": ["shell", "exec", "file-read", "file-write"],
        "deny": ["destructive", "power", "file-write:/etc/*", "exec:*forbidden*"],
        "approve": ["exec:touch *approval*", "file-write:*held-upload*"],
        "approvers": ["group:ops"],
        "approval_timeout": "60s",
    },
    {"name": "admin", "subjects": ["user:admin"], "connections": ["*"], "allow": ["read"]},
]

#: OpenSSH options for every client command (no config files, no agent, no prompts, quick failure)
_OPTS = (
    "-F",
    "/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "IdentityAgent=none",
    "-o",
    "ConnectTimeout=15",
)


class SshGateway:
    """A gateway with ssh connection ``bankhost`` in front of ``sshd`` (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        pg: TestPg,
        sshd: Sshd,
        *,
        policy: Sequence[Mapping[str, Any]] | None = None,
        connection: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        masking: bool = True,
    ) -> None:
        self.workdir = workdir
        self.sshd = sshd
        table: dict[str, Any] = {
            "name": "bankhost",
            "upstream": f"ssh://{sshd.user}@127.0.0.1:{sshd.port}",
            "private_key": f"file:{sshd.client_key}",
            "host_key": sshd.host_key_fingerprint,
            **(connection or {}),
        }
        doc: dict[str, Any] = {"policy": list(policy if policy is not None else SSH_POLICY), **(extra or {})}
        if masking:
            doc.setdefault(
                "masking",
                [{"connections": ["bankhost"], "detectors": ["credit_card", "email"], "style": "last4"}],
            )
        self.gw = Gateway(
            workdir,
            pg,
            [],
            ssh=[table],
            gateway={"admins": ["user:admin"]},
            identity=identity,
            extra=doc,
        )
        self.keys: dict[str, Path] = {}

    def start(self) -> SshGateway:
        self.gw.start()
        return self

    def stop(self) -> int | None:
        return self.gw.stop()

    @property
    def port(self) -> int:
        return self.gw.port("bankhost")

    # -- identities ---------------------------------------------------------------------------------
    def key_of(self, person: str) -> Path:
        """A key pair for ``person`` (generated once), registered to them with ``hoopgw ssh-keys add``."""
        if person in self.keys:
            return self.keys[person]
        path = self.workdir / f"id_{person}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", person, "-f", str(path)],
            check=True,
            timeout=30,
        )
        admin = self.gw.token("admin", ())
        groups = ",".join(PEOPLE.get(person, ("dev",)))
        res = self.gw.run_cli(
            "ssh-keys", "add", "--subject", person, "--groups", groups, f"{path}.pub", "--token", admin
        )
        assert res.returncode == 0, res.stderr
        self.keys[person] = path
        return path

    def unregistered_key(self) -> Path:
        path = self.workdir / "id_stranger"
        if not path.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
            )
        return path

    # -- client commands ----------------------------------------------------------------------------
    def ssh_cmd(self, person: str, *args: str, key: Path | None = None, user: str | None = None) -> list[str]:
        key = key or self.key_of(person)
        return ["ssh", *_OPTS, "-i", str(key), "-p", str(self.port), f"{user or person}@127.0.0.1", *args]

    def ssh(
        self, person: str, *args: str, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.ssh_cmd(person, *args), capture_output=True, timeout=timeout, **kw)

    def scp_cmd(self, person: str, *args: str, legacy: bool = False) -> list[str]:
        key = self.key_of(person)
        mode = ["-O"] if legacy else []
        return ["scp", *_OPTS, *mode, "-i", str(key), "-P", str(self.port), *args]

    def remote(self, person: str, path: str | Path) -> str:
        return f"{person}@127.0.0.1:{path}"

    def sftp_cmd(self, person: str, batch: Path) -> list[str]:
        key = self.key_of(person)
        return ["sftp", *_OPTS, "-i", str(key), "-P", str(self.port), "-b", str(batch), f"{person}@127.0.0.1"]

    def rsync_e(self, person: str) -> str:
        key = self.key_of(person)
        return " ".join(["ssh", *_OPTS, "-i", str(key), "-p", str(self.port)])

    # -- the audit store ----------------------------------------------------------------------------
    def events(self, kind: str | None = None, session_id: str | None = None) -> list[dict[str, Any]]:
        """Committed events (data decoded, with ``_session`` and ``_prompt``), oldest first."""
        sql = "SELECT session_id, kind, data, prompt_id FROM events WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if session_id is not None:
            sql += " AND session_id = ?"
            args.append(session_id)
        with sqlite3.connect(self.gw.data_dir / "audit.db") as db:
            rows = db.execute(sql + " ORDER BY seq", args).fetchall()
        return [{**orjson.loads(d), "_session": s, "_kind": k, "_prompt": p} for s, k, d, p in rows]

    def wait_events(
        self, kind: str, /, count: int = 1, timeout: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait (bounded) until ``count`` events of ``kind`` whose fields equal ``match`` are committed."""
        found: list[dict[str, Any]] = []

        def ready() -> bool:
            nonlocal found
            found = [e for e in self.events(kind) if all(e.get(k) == v for k, v in match.items())]
            return len(found) >= count

        wait_until(ready, timeout, what=f"{count} {kind} event(s) matching {match}")
        return found

    def sessions(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.gw.data_dir / "audit.db") as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM sessions WHERE type = 'ssh' ORDER BY started_at").fetchall()
        return [dict(r) for r in rows]
