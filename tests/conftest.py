"""Shared fixtures: a real PostgreSQL for the session and the real gateway as a child process.

- ``pg``: session-scoped :class:`~tests._support.pg.TestPg` (roles app/md5user/trustuser/ssluser with random
  passwords, database ``bank`` owned by app).
- ``gateway_factory``: make and start gateways with custom connections/config; all stopped at teardown.
- ``gateway``: one started gateway with the default ``bankdb`` connection (function scope).
- ``module_gateway``: the same, shared by a test module.
- ``sshd``: session-scoped :class:`~tests._support.sshd.Sshd`, a real OpenSSH server on a high port with its
  own host and client keys; ``fresh_sshd``: a private one per test, for tests that kill or restart it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from ._support.gateway import Gateway, PgConn
from ._support.pg import TestPg, start_test_pg
from ._support.sshd import Sshd


class GatewayFactory(Protocol):
    def __call__(
        self,
        connections: Sequence[PgConn] | None = None,
        *,
        gateway: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        timeout: float = 20.0,
    ) -> Gateway: ...


@pytest.fixture(scope="session")
def pg() -> Iterator[TestPg]:
    """A real PostgreSQL 15 for the whole session (TLS on, SCRAM default)."""
    db = start_test_pg()
    try:
        yield db
    finally:
        db.cluster.stop()


def _make_factory(base: Path, pg: TestPg) -> tuple[GatewayFactory, Callable[[], None]]:
    made: list[Gateway] = []

    def factory(
        connections: Sequence[PgConn] | None = None,
        *,
        gateway: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        timeout: float = 20.0,
    ) -> Gateway:
        gw = Gateway(
            base / f"gw{len(made)}",
            pg,
            connections,
            gateway=gateway,
            identity=identity,
            extra=extra,
            env=env,
        )
        made.append(gw)
        if start:
            gw.start(timeout)
        return gw

    def stop_all() -> None:
        for gw in made:
            gw.stop()
            # Captured output: pytest shows it only for a failing test.
            sys.stdout.write(f"\n--- {gw!r} exit={gw.returncode}\n{gw.log_tail(60)}\n")

    return factory, stop_all


@pytest.fixture
def gateway_factory(tmp_path: Path, pg: TestPg) -> Iterator[GatewayFactory]:
    """Make gateways: ``gateway_factory([PgConn("md5db", role="md5user")], gateway={"idle_timeout": 1})``."""
    factory, stop_all = _make_factory(tmp_path, pg)
    try:
        yield factory
    finally:
        stop_all()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> Gateway:
    """A started gateway with connection ``bankdb`` (upstream role app, SCRAM)."""
    return gateway_factory()


@pytest.fixture(scope="module")
def module_gateway_factory(tmp_path_factory: pytest.TempPathFactory, pg: TestPg) -> Iterator[GatewayFactory]:
    """Like ``gateway_factory``, shared by one test module."""
    factory, stop_all = _make_factory(tmp_path_factory.mktemp("gw"), pg)
    try:
        yield factory
    finally:
        stop_all()


@pytest.fixture(scope="module")
def module_gateway(module_gateway_factory: GatewayFactory) -> Gateway:
    """A started gateway with connection ``bankdb`` shared by the tests of one module."""
    return module_gateway_factory()


@pytest.fixture(scope="module")
def admin(pg: TestPg) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A superuser connection straight to the cluster (unix socket), e.g. to watch pg_stat_activity."""
    with psycopg.connect(pg.cluster.dsn(unix=True), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """Debian's OpenSSH sshd on 127.0.0.1 for the session; log in as ``sshd.user`` with ``sshd.client_key``.

    Shared: tests must not stop, kill or reconfigure it (use ``fresh_sshd``) and keep their files under
    a directory of their own in ``sshd.workdir``.
    """
    server = Sshd().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_sshd() -> Iterator[Sshd]:
    """A private sshd for one test, which may ``kill()``, ``kill_sessions()`` or restart it."""
    server = Sshd().start()
    try:
        yield server
    finally:
        server.stop(remove=False)
        # Captured output: pytest shows it only for a failing test.
        sys.stdout.write(f"\n--- {server!r}\n{server.log_tail(60)}\n")
        server.stop(remove=True)
