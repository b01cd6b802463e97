"""The test suite's PostgreSQL: one TempCluster per session with a role per upstream auth method."""

from __future__ import annotations

from dataclasses import dataclass, field

from hoopgw._pgcluster import Role, TempCluster, conninfo

__all__ = ["ROLE_AUTH", "TestPg", "start_test_pg"]

#: Role name -> (pg_hba method, TLS only). Each role proves one way the gateway logs in upstream.
ROLE_AUTH: dict[str, tuple[str, bool]] = {
    "app": ("scram-sha-256", False),
    "md5user": ("md5", False),
    "trustuser": ("trust", False),
    "ssluser": ("scram-sha-256", True),
}


@dataclass
class TestPg:
    """The running cluster plus the random per-run passwords of its roles."""

    __test__ = False  # not a test class, despite the name

    cluster: TempCluster
    passwords: dict[str, str] = field(default_factory=dict)
    database: str = "bank"

    @property
    def port(self) -> int:
        return self.cluster.port

    def password(self, role: str) -> str | None:
        return self.passwords.get(role)

    def dsn(self, role: str = "app", *, sslmode: str = "prefer", db: str | None = None, **extra: str) -> str:
        """Direct (gateway-less) libpq conninfo for ``role``."""
        dsn = self.cluster.dsn(role, db=db or self.database, sslmode=sslmode)
        return f"{dsn} {conninfo(**extra)}" if extra else dsn

    def url(self, role: str = "app", *, sslmode: str = "prefer", db: str | None = None) -> str:
        """``postgresql://role@127.0.0.1:PORT/bank?sslmode=...`` for a gateway ``upstream`` key."""
        return self.cluster.url(role, db=db or self.database, sslmode=sslmode)

    def psql(self, sql: str, *, db: str | None = None, user: str | None = None) -> str:
        """SQL as the superuser (or ``user``) over the unix socket; unaligned, tuples only."""
        return self.cluster.psql(sql, db=db or self.database, user=user)


def start_test_pg() -> TestPg:
    """Start a cluster with roles app (SCRAM), md5user (md5), trustuser (trust), ssluser (TLS only),
    and database ``bank`` owned by app, in which every role may work."""
    cluster = TempCluster(settings={"max_connections": 200})
    cluster.start()
    try:
        pg = TestPg(cluster)
        for name, (auth, ssl_only) in ROLE_AUTH.items():
            password = None if auth == "trust" else TempCluster.random_password()
            cluster.add_role(Role(name, password=password, auth=auth, ssl_only=ssl_only))  # type: ignore[arg-type]
            if password is not None:
                pg.passwords[name] = password
        cluster.create_database(pg.database, owner="app")
        others = ", ".join(n for n in ROLE_AUTH if n != "app")
        cluster.psql(
            f"GRANT ALL ON SCHEMA public TO {others};\n"
            f"ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT ALL ON TABLES TO {others};\n"
            f"ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT ALL ON SEQUENCES TO {others};",
            db=pg.database,
        )
    except BaseException:
        cluster.stop()
        raise
    return pg
