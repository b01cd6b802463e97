"""``hoopgw demo``: a newcomer's first five minutes.

Starts a throwaway PostgreSQL with a small fake bank and a throwaway OpenSSH ``sshd`` whose files hold fake
card numbers, writes a ``hoopgw.toml`` next to them, starts the gateway on it (a child process, so its
shutdown is the real ``SIGTERM`` path), mints local tokens for an AI agent (``alice``, group ``ai-agents``)
and a DBA (``dana``, group ``dba``), registers their SSH keys, takes a short tour through the gateway with the
real clients and prints ready-to-paste commands. Runs until Ctrl-C or SIGTERM, then stops everything it
started.

The demo grows with the product: :class:`DemoStack` builds the config from :meth:`DemoStack.config_doc`
(add ``masking`` / ``policy`` blocks there), and :meth:`DemoStack.instructions` prints one section per
capability. :class:`GatewayProcess` (start, wait for health, mint tokens, stop) is shared with the test
fixtures and ``bench/pg_e2e.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Self

from hoopgw._pgcluster import ClusterError, Role, TempCluster, free_port, port_is_free
from hoopgw._sshd import Sshd, SshdError, fingerprint, keygen
from hoopgw.approvals import ApprovalStore

__all__ = [
    "DemoStack",
    "GatewayError",
    "GatewayProcess",
    "add_arguments",
    "bank_schema_sql",
    "cards_file_text",
    "luhn_check_digit",
    "luhn_valid",
    "main",
    "toml_dumps",
]

# ------------------------------------------------------------------------------------------------------
# A tiny TOML writer (tomllib only reads)
# ------------------------------------------------------------------------------------------------------


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as a TOML value")


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """Write ``{"table": {...}, "array_of_tables": [{...}, ...]}`` as TOML (one level of tables)."""
    out: list[str] = []
    for key, value in doc.items():
        if isinstance(value, Mapping):
            out.append(f"[{key}]")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None)
            out.append("")
        elif isinstance(value, list | tuple) and value and all(isinstance(x, Mapping) for x in value):
            for item in value:
                out.append(f"[[{key}]]")
                out.extend(f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None)
                out.append("")
        else:
            out.insert(0, f"{key} = {_toml_value(value)}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------
# The gateway as a child process
# ------------------------------------------------------------------------------------------------------


class GatewayError(RuntimeError):
    """The gateway child process failed to start, answer or stop."""


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A plain GET on loopback without proxies; returns (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def gateway_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a gateway child: ours without libpq's PG* or HOOPGW_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "HOOPGW_"))}
    env.update(extra or {})
    return env


@dataclass
class GatewayProcess:
    """``python -m hoopgw serve -c CONFIG`` as a child process.

    Args:
        config_path: the TOML file.
        api: ``(host, port)`` of ``api_listen``; ``/healthz`` must answer 200 there.
        listens: ``(host, port)`` of every listener that must accept TCP before the gateway counts as up.
        log_path: stdout and stderr of the child.
        env: extra environment (the secrets behind ``env:`` references).
    """

    config_path: Path
    api: tuple[str, int]
    listens: Sequence[tuple[str, int]]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # secrets: never in a repr
    python: str = sys.executable
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    returncode: int | None = None

    def cli(self, *args: str) -> list[str]:
        """A ``python -m hoopgw ARGS -c CONFIG`` command line."""
        return [self.python, "-m", "hoopgw", *args, "-c", str(self.config_path)]

    def start(self, timeout: float = 20.0) -> Self:
        """Start the child and wait (at most ``timeout`` s) until it is healthy and listening."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cli("serve"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=gateway_env(self.env),
                cwd=self.config_path.parent,
                start_new_session=True,  # Ctrl-C in a terminal reaches the owner, which forwards SIGTERM
            )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop(timeout=5.0)
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll ``/healthz`` and the listen ports until all answer, the child dies, or time runs out."""
        deadline = time.monotonic() + timeout
        pending = "/healthz"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise GatewayError(f"gateway exited with {code} while starting:\n{self.log_tail()}")
            try:
                status, _ = http_get(*self.api, "/healthz", timeout=1.0)
            except OSError:
                status = 0
            if status == 200:
                down = [f"{h}:{p}" for h, p in self.listens if not tcp_accepts(h, p)]
                if not down:
                    return
                pending = ", ".join(down)
            else:
                pending = f"/healthz (status {status or 'no answer'})"
            time.sleep(0.1)
        raise GatewayError(f"gateway not ready after {timeout} s, waiting for {pending}:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def token(self, subject: str, groups: Iterable[str] = (), ttl: str | None = None) -> str:
        """Mint a local-issuer token with ``hoopgw token issue``; return it."""
        cmd = self.cli("token", "issue", "--subject", subject, "--groups", ",".join(groups))
        if ttl is not None:
            cmd += ["--ttl", ttl]
        try:
            res = subprocess.run(
                cmd, capture_output=True, text=True, timeout=30, env=gateway_env(self.env), check=False
            )
        except subprocess.TimeoutExpired as e:
            raise GatewayError("`hoopgw token issue` took longer than 30 s") from e
        if res.returncode != 0 or not res.stdout.strip():
            raise GatewayError(f"`hoopgw token issue` failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout.strip()

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait at most ``timeout`` s, then SIGKILL; return the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10.0)
        self.returncode = proc.returncode
        return self.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty gateway log)"


# ------------------------------------------------------------------------------------------------------
# The fake bank
# ------------------------------------------------------------------------------------------------------


def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit to append to ``payload`` (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right, counting the future check digit as first
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True when the digit string passes the Luhn check."""
    return len(number) > 1 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


#: Card numbers published by the networks for testing; never real accounts.
TEST_PANS = (
    "4111111111111111",
    "5500005555555559",
    "378282246310005",
    "4012888888881881",
    "6011111111111117",
)


def _make_pan(rng: random.Random) -> tuple[str, str]:
    brand, prefix, length = rng.choice([("visa", "4", 16), ("mastercard", "55", 16), ("amex", "37", 15)])
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return brand, body + luhn_check_digit(body)


def _iban_de(rng: random.Random) -> str:
    bban = "".join(str(rng.randrange(10)) for _ in range(18))
    digits = "".join(str(int(c, 36)) for c in bban + "DE00")
    check = 98 - int(digits) % 97
    return f"DE{check:02d}{bban}"


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


_FIRST = [
    "Alice",
    "Bruno",
    "Chen",
    "Dana",
    "Emeka",
    "Farah",
    "Gustav",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
]
_LAST = [
    "Okafor",
    "Schmidt",
    "Nakamura",
    "Garcia",
    "Novak",
    "Haddad",
    "Lindqvist",
    "Rossi",
    "Patel",
    "Moreau",
]


def _q(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int | float):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def _insert(table: str, columns: str, *values: str) -> str:
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(values)});"  # noqa: S608 - quoted by _q


def bank_schema_sql(seed: int = 2024, customers: int = 20, transactions: int = 200) -> str:
    """DDL and deterministic fake data for the ``bank`` database (customers, accounts, cards, transfers)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    sql = [
        """
CREATE TABLE customers (
    id          serial PRIMARY KEY,
    full_name   text NOT NULL,
    email       text NOT NULL UNIQUE,
    ssn         text NOT NULL,
    phone       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE accounts (
    id              serial PRIMARY KEY,
    customer_id     int NOT NULL REFERENCES customers(id),
    account_number  text NOT NULL UNIQUE,
    iban            text NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('checking', 'savings')),
    currency        text NOT NULL DEFAULT 'USD',
    balance         numeric(14, 2) NOT NULL DEFAULT 0
);
CREATE TABLE cards (
    id          serial PRIMARY KEY,
    account_id  int NOT NULL REFERENCES accounts(id),
    pan         text NOT NULL UNIQUE,
    brand       text NOT NULL,
    holder      text NOT NULL,
    expires     date NOT NULL
);
CREATE TABLE transactions (
    id                 bigserial PRIMARY KEY,
    account_id         int NOT NULL REFERENCES accounts(id),
    amount             numeric(14, 2) NOT NULL,
    description        text NOT NULL,
    counterparty_iban  text,
    booked_at          timestamptz NOT NULL
);
"""
    ]
    names: list[str] = []
    for i in range(1, customers + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        names.append(f"{first} {last}")
        email = f"{first.lower()}.{last.lower()}{i}@example.com"
        phone = f"+1 212-555-01{rng.randrange(100):02d}"
        sql.append(
            _insert(
                "customers",
                "full_name, email, ssn, phone",
                _q(names[-1]),
                _q(email),
                _q(_ssn(rng)),
                _q(phone),
            )
        )
    accounts = 0
    ibans: list[str] = []
    for cust in range(1, customers + 1):
        for kind in ("checking", "savings")[: rng.randint(1, 2)]:
            accounts += 1
            ibans.append(_iban_de(rng))
            number = f"{rng.randrange(10**9, 10**10)}"
            balance = round(rng.uniform(10, 250_000), 2)
            sql.append(
                _insert(
                    "accounts",
                    "customer_id, account_number, iban, kind, balance",
                    _q(cust),
                    _q(number),
                    _q(ibans[-1]),
                    _q(kind),
                    _q(balance),
                )
            )
    pans = list(TEST_PANS)
    brands = {"4": "visa", "5": "mastercard", "3": "amex", "6": "discover"}
    for acct in range(1, accounts + 1):
        if pans:
            pan = pans.pop(0)
            brand = brands[pan[0]]
        else:
            brand, pan = _make_pan(rng)
        holder = names[(acct - 1) % len(names)]
        expires = f"{2027 + rng.randrange(4)}-{rng.randrange(1, 13):02d}-01"
        sql.append(
            _insert(
                "cards",
                "account_id, pan, brand, holder, expires",
                _q(acct),
                _q(pan),
                _q(brand),
                _q(holder),
                _q(expires),
            )
        )
    what = ["Grocery store", "Payroll", "Rent", "Coffee", "Wire transfer", "ATM withdrawal", "Utilities"]
    for _ in range(transactions):
        acct = rng.randrange(1, accounts + 1)
        amount = round(rng.uniform(-2000, 3000), 2)
        cp = _q(rng.choice(ibans)) if rng.random() < 0.4 else "NULL"
        ago = f"now() - interval '{rng.randrange(0, 90 * 24 * 60)} minutes'"
        sql.append(
            _insert(
                "transactions",
                "account_id, amount, description, counterparty_iban, booked_at",
                _q(acct),
                _q(amount),
                _q(rng.choice(what)),
                cp,
                ago,
            )
        )
    return "\n".join(sql) + "\n"


def cards_file_text(seed: int = 2024, rows: int = 8) -> str:
    """The demo SSH host's ``cards.txt``: card numbers (:data:`TEST_PANS` first), holders, emails, IBANs."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    pans = list(TEST_PANS)
    lines = [f"{'card':<20} {'holder':<18} {'email':<32} iban"]
    for i in range(1, rows + 1):
        pan = pans.pop(0) if pans else _make_pan(rng)[1]
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first.lower()}.{last.lower()}{i}@example.com"
        lines.append(f"{pan:<20} {first + ' ' + last:<18} {email:<32} {_iban_de(rng)}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------
# The demo stack
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    """A person or agent the demo mints a token for."""

    subject: str
    groups: tuple[str, ...]
    what: str


DEMO_USERS = (
    DemoUser("alice", ("ai-agents",), "the AI agent"),
    DemoUser("dana", ("dba",), "the DBA"),
)


def _pick_port(preferred: int, taken: set[int]) -> int:
    port = preferred if 0 < preferred < 65536 and preferred not in taken and port_is_free(preferred) else 0
    while not port or port in taken:
        port = free_port()
    taken.add(port)
    return port


class DemoStack:
    """Everything ``hoopgw demo`` starts; :meth:`start` then :meth:`stop` (also a context manager)."""

    def __init__(self, workdir: Path, *, port_base: int = 15432, keep_dir: bool = True) -> None:
        self.workdir = workdir.resolve()
        self.keep_dir = keep_dir
        taken: set[int] = set()
        self.pg_port = _pick_port(port_base, taken)
        self.api_port = _pick_port(port_base + 1, taken)
        self.ssh_port = _pick_port(port_base + 2, taken)
        self.config_path = self.workdir / "hoopgw.toml"
        self.data_dir = self.workdir / "var"
        self.secret_path = self.workdir / "secrets" / "bankdb.password"
        self.cluster: TempCluster | None = None
        self.gateway: GatewayProcess | None = None
        self.tokens: dict[str, str] = {}
        self.refusal = ""
        #: the agent's write the demo leaves waiting for the DBA's decision: its psql and request id
        self.held_psql: subprocess.Popen[bytes] | None = None
        self.held_request: str | None = None
        self.held_log = self.workdir / "held-write.log"
        #: where the tour's ``hoopgw evidence export`` writes (a new directory per demo run)
        self.evidence_dir = self.workdir / time.strftime("evidence-%Y%m%d-%H%M%S", time.gmtime())
        #: the SSH target: None when no sshd is installed (:attr:`ssh_note` says why)
        self.sshd: Sshd | None = None
        self.ssh_note = ""
        self.ssh_dir = self.workdir / "ssh"
        #: the people's SSH keys (registered with ``hoopgw ssh-keys add``) and the gateway's pinned host key
        self.ssh_keys: dict[str, Path] = {}
        self.gateway_known_hosts = self.ssh_dir / "known_hosts"
        self.gateway_host_fingerprint = ""
        #: what the SSH tour ran and printed
        self.ssh_tour: list[str] = []

    # --- the config: extend here as capabilities land (masking, policy, ssh connections, ...)
    @staticmethod
    def masking_doc() -> list[dict[str, Any]]:
        """The demo's ``[[masking]]`` blocks: what the agent and the DBA never see in clear."""
        return [
            {
                "connections": ["bankdb"],
                "detectors": ["credit_card", "us_ssn", "iban", "email"],
                "columns": ["*.account_number"],
                "style": "last4",
            },
            {
                # Card expiry dates look harmless, but with a card number they are card data (PCI DSS).
                "connections": ["bankdb"],
                "columns": ["cards.expires"],
                "column_style": "null",
            },
        ]

    @staticmethod
    def policy_doc() -> list[dict[str, Any]]:
        """The demo's ``[[policy]]`` blocks: the agent reads, asks before writing, never changes schema."""
        return [
            {
                "name": "agents",
                "subjects": ["group:ai-agents"],
                "connections": ["bankdb"],
                "allow": ["read"],
                "approve": ["write"],
                "deny": ["ddl", "dcl", "admin", "write-without-where"],
                "approvers": ["group:dba"],
            },
            {"name": "dba", "subjects": ["group:dba"], "connections": ["bankdb"], "allow": ["*"]},
        ]

    @staticmethod
    def ssh_masking_doc() -> list[dict[str, Any]]:
        """The ``[[masking]]`` block of the SSH host: terminal and exec output, as it streams."""
        return [
            {"connections": ["bankhost"], "detectors": ["credit_card", "email", "iban"], "style": "last4"}
        ]

    @staticmethod
    def ssh_policy_doc() -> list[dict[str, Any]]:
        """The ``[[policy]]`` blocks of the SSH host: shells and file transfers for the DBA, a few
        read-only commands for the agent (whose output is masked; file transfers are not)."""
        return [
            {
                "name": "ssh-dba",
                "subjects": ["group:dba"],
                "connections": ["bankhost"],
                "allow": ["shell", "exec", "file-read", "file-write"],
                "deny": ["destructive", "file-write:/etc/*"],
            },
            {
                "name": "ssh-agents",
                "subjects": ["group:ai-agents"],
                "connections": ["bankhost"],
                "allow": ["exec:cat *", "exec:ls **", "exec:grep **"],
                "deny": ["destructive"],
            },
        ]

    def ssh_connection_doc(self, sshd: Sshd) -> dict[str, Any]:
        """The ``type = "ssh"`` connection in front of the demo's sshd (its client key is brokered)."""
        return {
            "name": "bankhost",
            "type": "ssh",
            "listen": f"127.0.0.1:{self.ssh_port}",
            "upstream": f"ssh://{sshd.user}@{sshd.host}:{sshd.port}",
            "private_key": f"file:{sshd.client_key}",
            "host_key": sshd.host_key_fingerprint,
        }

    def config_doc(self, cluster: TempCluster) -> dict[str, Any]:
        """The demo's hoopgw.toml as a dict (see DESIGN.md "The face")."""
        ssh = self.sshd is not None
        return {
            "gateway": {
                "data_dir": str(self.data_dir),
                "api_listen": f"127.0.0.1:{self.api_port}",
                "admins": ["group:dba"],
                "auditors": ["group:dba"],
            },
            "identity": {"issuer": "local", "audience": "hoopgw"},
            "connections": [
                {
                    "name": "bankdb",
                    "type": "postgres",
                    "listen": f"127.0.0.1:{self.pg_port}",
                    "upstream": cluster.url("app", db="bank", sslmode="require"),
                    "password": f"file:{self.secret_path}",
                },
                *([self.ssh_connection_doc(self.sshd)] if self.sshd is not None else []),
            ],
            "masking": self.masking_doc() + (self.ssh_masking_doc() if ssh else []),
            "policy": self.policy_doc() + (self.ssh_policy_doc() if ssh else []),
        }

    def _start_cluster(self) -> TempCluster:
        cluster = TempCluster()
        self.cluster = cluster
        cluster.start()
        password = TempCluster.random_password()
        cluster.add_role(Role("app", password=password))
        cluster.create_database("bank", owner="app")
        cluster.psql(bank_schema_sql(), db="bank", user="app")
        self.secret_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secret_path.parent, 0o700)
        fd = os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        return cluster

    #: the SSH host's files: fake card data to read, a directory the tour tries to delete
    CARDS_FILE = "cards.txt"
    STATEMENTS_DIR = "statements"

    def _start_sshd(self) -> Sshd | None:
        """A throwaway sshd with fake card data in its workdir; None (and :attr:`ssh_note`) without sshd."""
        try:
            sshd = Sshd(self.workdir / "sshd", rsa=False)
        except SshdError as e:  # not installed: the demo runs without its SSH part
            self.ssh_note = str(e)
            return None
        self.sshd = sshd
        sshd.start()
        (sshd.workdir / self.CARDS_FILE).write_text(cards_file_text())
        statements = sshd.workdir / self.STATEMENTS_DIR
        statements.mkdir(exist_ok=True)
        (statements / "2024-06.txt").write_text("opening balance 1,204.17 USD\n")
        return sshd

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cluster = self._start_cluster()
        sshd = self._start_sshd()
        self.config_path.write_text(
            "# Written by `hoopgw demo`; the upstream PostgreSQL and sshd are throwaway.\n"
            + toml_dumps(self.config_doc(cluster))
        )
        listens = [("127.0.0.1", self.pg_port)] + ([("127.0.0.1", self.ssh_port)] if sshd else [])
        self.gateway = GatewayProcess(
            config_path=self.config_path,
            api=("127.0.0.1", self.api_port),
            listens=listens,
            log_path=self.workdir / "gateway.log",
        ).start(timeout=30.0)
        for user in DEMO_USERS:
            self.tokens[user.subject] = self.gateway.token(user.subject, user.groups)
        self.refusal = self._try_ddl_as_agent()
        if sshd is not None:
            self._register_ssh_keys()
            self._pin_gateway_host_key()
            self.ssh_tour = self._ssh_tour(sshd)
        self.held_request = self._hold_a_write_as_agent()
        return self

    # --- the SSH part
    def _hoopgw(self, *args: str) -> None:
        """Run ``hoopgw ARGS -c CONFIG`` (bounded); GatewayError when it fails."""
        assert self.gateway is not None
        try:
            res = subprocess.run(
                self.gateway.cli(*args),
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
                env=gateway_env(self.gateway.env),
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise GatewayError(f"`hoopgw {args[0]}` took longer than 60 s") from e
        if res.returncode != 0:
            raise GatewayError(
                f"`hoopgw {' '.join(args[:2])}` failed ({res.returncode}): {res.stderr.strip()}"
            )

    def _register_ssh_keys(self) -> None:
        """A key pair per demo user, registered to them and their groups with ``hoopgw ssh-keys add``."""
        self.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        admin = self.tokens[DEMO_USERS[1].subject]  # dana: group dba is in gateway.admins
        for user in DEMO_USERS:
            key = self.ssh_dir / f"id_{user.subject}"
            if not key.exists():
                keygen(key, "ed25519", f"{user.subject}@hoopgw-demo")
            self._hoopgw(
                "ssh-keys", "add", "--subject", user.subject, "--groups", ",".join(user.groups),
                f"{key}.pub", "--token", admin,
            )  # fmt: skip
            self.ssh_keys[user.subject] = key

    def _pin_gateway_host_key(self) -> None:
        """Write :attr:`gateway_known_hosts` with the host key the gateway generated in its data dir."""
        pub = self.data_dir / "ssh_host_ed25519_key.pub"
        self.gateway_host_fingerprint = fingerprint(pub)
        key = " ".join(pub.read_text().split()[:2])
        self.gateway_known_hosts.write_text(f"[127.0.0.1]:{self.ssh_port} {key}\n")

    def ssh_options(self, subject: str) -> list[str]:
        """``-i KEY -o ... -p PORT``: the options of a person's ssh through the gateway (host key pinned)."""
        return [
            "-i", str(self.ssh_keys[subject]),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.gateway_known_hosts}",
        ]  # fmt: skip

    def ssh_command(self, subject: str, *command: str) -> list[str]:
        """``ssh OPTIONS -p PORT SUBJECT@127.0.0.1 COMMAND`` through the gateway."""
        return ["ssh", *self.ssh_options(subject), "-p", str(self.ssh_port), f"{subject}@127.0.0.1", *command]

    def _ssh_tour(self, sshd: Sshd) -> list[str]:
        """Run two commands as the DBA through the gateway with OpenSSH's ssh; return what to print."""
        dba = DEMO_USERS[1].subject
        steps = [
            ("cat", str(sshd.workdir / self.CARDS_FILE)),
            ("rm", "-rf", str(sshd.workdir / self.STATEMENTS_DIR)),
        ]
        out: list[str] = []
        for command in steps:
            argv = self.ssh_command(dba, *command)
            # the tour never asks anything: no config files, no agent, no prompt
            quiet = ["-F", "none", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
            out.append(f"  $ {shlex.join(argv)}")
            try:
                res = subprocess.run(
                    [argv[0], *quiet, *argv[1:]],
                    capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                out.append(f"    (could not run ssh: {exc})")
                continue
            out += ["    " + line for line in (res.stdout + res.stderr).splitlines()]
            out.append(f"    (exit status {res.returncode})")
        kept = (sshd.workdir / self.STATEMENTS_DIR).is_dir()
        out.append(f"  {self.STATEMENTS_DIR}/ is {'still there' if kept else 'GONE'}.")
        return out

    #: the write the demo sends as the agent at start; it waits for the DBA's decision
    HELD_WRITE = "UPDATE accounts SET balance = balance + 10 WHERE id = 1 RETURNING id, balance"

    def _hold_a_write_as_agent(self) -> str | None:
        """Send :attr:`HELD_WRITE` as the agent from a background psql (output in :attr:`held_log`);
        return the id of the approval request it waits on (None if it did not appear)."""
        psql = shutil.which("psql") or "psql"
        conninfo = self.psql_command(DEMO_USERS[0].subject)[len('psql "') : -1]
        with open(self.held_log, "wb") as log:
            self.held_psql = subprocess.Popen(
                [psql, "-X", "-c", self.HELD_WRITE, conninfo],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        store = ApprovalStore(self.data_dir)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.held_psql.poll() is None:
                waiting = store.list(status="pending", limit=10)
                if waiting:
                    return waiting[0].id
                time.sleep(0.1)
        finally:
            store.close()
        return None

    def _try_ddl_as_agent(self) -> str:
        """Run DDL as the agent through the gateway and return the refusal psql printed."""
        psql = shutil.which("psql") or "psql"
        agent = DEMO_USERS[0].subject
        conninfo = self.psql_command(agent)[len('psql "') : -1]
        try:
            res = subprocess.run(
                [psql, "-X", "-c", "CREATE TABLE agent_notes (note text)", conninfo],
                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(could not run psql: {exc})"
        return res.stderr.strip() or res.stdout.strip()

    def stop(self) -> None:
        """Stop the gateway, then sshd and PostgreSQL; remove the work dir unless it is kept."""
        if self.held_psql is not None and self.held_psql.poll() is None:
            self.held_psql.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.held_psql.wait(10)
        if self.gateway is not None:
            self.gateway.stop()
        if self.sshd is not None:
            self.sshd.stop()  # sshd and every session it serves, by PID
        if self.cluster is not None:
            self.cluster.stop()
        if not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def psql_command(self, subject: str) -> str:
        return (
            f'psql "host=127.0.0.1 port={self.pg_port} dbname=bank user={subject} '
            f'sslmode=require password={self.tokens[subject]}"'
        )

    # --- what the demo prints: one section per capability
    def _approval_instructions(self, hoopgw: str, cfg: str) -> list[str]:
        agent, dba = DEMO_USERS[0].subject, DEMO_USERS[1].subject
        rid = self.held_request or "REQUEST_ID"
        return [
            f"Approvals: a write by {agent} is HELD inside the live session until a DBA decides. Just now",
            f"the demo sent, as {agent}:  {self.HELD_WRITE};",
            f"It is waiting as approval request {rid} (psql output goes to {self.held_log}).",
            f"Decide it as {dba} (the requester can never approve their own request):",
            f"  export HOOPGW_TOKEN={self.tokens[dba]}",
            f"  {hoopgw} approvals list {cfg}",
            f"  {hoopgw} approvals show {rid} {cfg}",
            f'  {hoopgw} approvals approve {rid} --reason "month-end fix" {cfg}',
            f'  {hoopgw} approvals deny {rid} --reason "not today" {cfg}',
            f"then  cat {self.held_log}  shows the result (or ERROR 42501 naming the request).",
            "Every request and decision is a record signed with the gateway's Ed25519 key; check one",
            f"offline:  {hoopgw} approvals verify {rid} {cfg}",
            f"Try it yourself: as {agent}, run an UPDATE with a WHERE clause; psql prints a NOTICE with",
            "the request id and waits for the decision.",
            "",
        ]

    def _ssh_instructions(self, hoopgw: str, cfg: str) -> list[str]:
        sshd = self.sshd
        if sshd is None or not self.ssh_keys:
            return [f"SSH: skipped, {self.ssh_note or 'no sshd'}.", ""]
        agent, dba = DEMO_USERS[0].subject, DEMO_USERS[1].subject
        cards = sshd.workdir / self.CARDS_FILE

        def opts(subject: str) -> str:
            return shlex.join(self.ssh_options(subject))

        def ssh(subject: str, *command: str) -> str:
            return shlex.join(self.ssh_command(subject, *command))

        at = f"{dba}@127.0.0.1"
        return [
            f"SSH: the gateway listens on 127.0.0.1:{self.ssh_port} for bankhost, a throwaway OpenSSH sshd",
            f"(127.0.0.1:{sshd.port}) that the gateway logs in to as {sshd.user} with a key only the gateway",
            "holds. Each demo user's SSH key was registered through the CLI, e.g.",
            f"  {hoopgw} ssh-keys add --subject {dba} --groups dba {self.ssh_keys[dba]}.pub \\",
            f"      --token ADMIN_TOKEN {cfg}",
            f"The gateway's host key is {self.gateway_host_fingerprint},",
            f"pinned in {self.gateway_known_hosts} (or connect once with",
            "-o StrictHostKeyChecking=accept-new and compare the fingerprint).",
            f"Just now the demo ran, as {dba} (the DBA), with OpenSSH's ssh through the gateway:",
            *self.ssh_tour,
            "Shell and command output is masked as it streams (card numbers, emails and IBANs keep their",
            "last 4 characters), and the policy ([[policy]] ssh-dba) refuses destructive commands before",
            "they reach the host. File transfers (scp, sftp, rsync) stay byte-exact, so the policy decides",
            "who may copy files at all.",
            f"Try it as {dba} (shells, commands, scp/sftp; never destructive commands or writes under /etc):",
            f"  {ssh(dba)}",
            f"  {ssh(dba, 'grep', '4111', str(cards))}",
            f"  scp {opts(dba)} -P {self.ssh_port} {self.config_path} {at}:{sshd.workdir}/",
            f"  sftp {opts(dba)} -P {self.ssh_port} {at}",
            f"and as {agent} (the AI agent: only cat, ls and grep, no shell, no file transfers):",
            f"  {ssh(agent, 'cat', str(cards))}",
            "",
        ]

    def instructions(self) -> str:
        script = Path(sys.executable).parent / "hoopgw"
        hoopgw = str(script) if script.exists() else f"{sys.executable} -m hoopgw"
        cfg = f"-c {self.config_path}"
        out = [
            "",
            "hoopgw demo is running.",
            f"  gateway  PostgreSQL listener 127.0.0.1:{self.pg_port}, control API http://127.0.0.1:{self.api_port}",
            f"  config   {self.config_path}",
            f"  log      {self.workdir / 'gateway.log'}",
            "  upstream a throwaway PostgreSQL with a fake bank (customers, accounts, cards, transactions);",
            "           its password is brokered by the gateway and never shown to clients.",
            "",
        ]
        for user in DEMO_USERS:
            out += [f"Connect as {user.what} ({user.subject}, group {', '.join(user.groups)}):",
                    f"  {self.psql_command(user.subject)}", ""]  # fmt: skip
        out += [
            "Try:  SELECT full_name, email, ssn FROM customers LIMIT 5;",
            "      SELECT pan, holder, expires FROM cards LIMIT 5;",
            "      SELECT account_number, iban, balance FROM accounts LIMIT 5;",
            "",
            "Results are masked by the gateway before they reach the client (and the audit store):",
            "card numbers, SSNs, IBANs, emails and accounts.account_number keep only their last 4",
            "characters, and cards.expires comes back NULL (the [[masking]] blocks in the config).",
            "",
            f"Policy: {DEMO_USERS[0].subject} (ai-agents) may read, must ask before writing, and may",
            "never change schema, privileges or server settings ([[policy]] in the config). The gateway",
            "decides on the parsed statement. Just now the demo tried DDL as the agent:",
            "  CREATE TABLE agent_notes (note text);",
            *("  " + line for line in self.refusal.splitlines()),
            f"The DBA ({DEMO_USERS[1].subject}) may do anything. A refused statement leaves the session",
            "usable.",
            "",
            *self._approval_instructions(hoopgw, cfg),
            *self._ssh_instructions(hoopgw, cfg),
            "See what was recorded:",
            f"  {hoopgw} sessions list {cfg}",
            f"  {hoopgw} sessions show SESSION_ID {cfg}",
            f"  {hoopgw} replay SESSION_ID {cfg}          (a timed transcript; --no-wait prints at once)",
            "Every audit event is hash-chained and sealed by signed checkpoints; check the whole trail:",
            f"  {hoopgw} audit verify {cfg}",
            "Export an evidence pack for examiners (events, sessions, signed approvals, prompts, an HTML",
            "report with charts, and a MANIFEST.json of SHA-256 sums signed by the gateway), then check it",
            "offline, as an examiner would:",
            f"  {hoopgw} evidence export --out {self.evidence_dir} {cfg}",
            f"  {hoopgw} evidence verify {self.evidence_dir}",
            f"and open {self.evidence_dir / 'report.html'} in a browser (it loads nothing from the network).",
            "",
            "Press Ctrl-C to stop everything.",
        ]
        return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hoopgw demo``."""
    parser.add_argument(
        "--port-base",
        type=int,
        default=15432,
        help="PostgreSQL listener port; the control API and the SSH listener use the next two "
        "(free ports if taken)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="keep the config, audit store and logs here (default: a temporary directory, removed at exit)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo files at exit")


def main(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C or SIGTERM."""
    workdir: Path | None = getattr(args, "dir", None)
    keep = workdir is not None or bool(getattr(args, "keep", False))
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="hoopgw-demo-"))
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = DemoStack(workdir, port_base=getattr(args, "port_base", 15432), keep_dir=keep)
    try:
        print(
            "Starting a throwaway PostgreSQL, an OpenSSH sshd and the gateway ...",
            file=sys.stderr,
            flush=True,
        )
        try:
            stack.start()
        except (ClusterError, GatewayError, SshdError, OSError) as e:
            print(f"hoopgw demo: {e}", file=sys.stderr)
            return 1
        print(stack.instructions(), flush=True)
        gateway = stack.gateway
        while not stop.wait(0.5):
            if gateway is None or not gateway.running:
                print(f"hoopgw demo: the gateway stopped:\n{gateway.log_tail() if gateway else ''}",
                      file=sys.stderr)  # fmt: skip
                return 1
        print("\nStopping ...", file=sys.stderr, flush=True)
        return 0
    finally:
        stack.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        if keep:
            print(f"Demo files kept in {workdir}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover - `hoopgw demo` is the entry point
    p = argparse.ArgumentParser(prog="hoopgw demo")
    add_arguments(p)
    sys.exit(main(p.parse_args()))
