"""SSH identities in approvals: a person is one person whether they log in with a token, a registered SSH
key or an SSH certificate — they hold the grants they asked for, see their requests and never decide
them — while an API key named like them is someone else. Real stores (SQLite, and PostgreSQL for the
grant look-up), real signing keys."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hoopgw._pgcluster import Role
from hoopgw.api import ApprovalApi
from hoopgw.approvals import ApprovalError, ApprovalService, ApprovalStore, load_digest_key, load_signing_key
from hoopgw.audit._db import Store
from hoopgw.audit._siem_sinks import NOTICE, severity
from hoopgw.identity import Authenticator
from hoopgw.identity._principal import Auth, Principal

from ._support.pg import TestPg

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z in ms
GRANT_MS = 1_800_000
PERSON_KINDS: tuple[Auth, ...] = ("token", "sshkey", "sshcert")


def who(subject: str, auth: Auth, *groups: str) -> Principal:
    return Principal(subject=subject, groups=frozenset(groups), auth=auth)


ALICE = who("alice", "token", "support", "dba")  # the requester, also in the approver group
BOB = who("bob", "token", "dba")


def service(where: Path | Store) -> ApprovalService:
    data_dir = where if isinstance(where, Path) else where.data_dir
    return ApprovalService(ApprovalStore(where), load_signing_key(data_dir), load_digest_key(data_dir))


def open_grant(svc: ApprovalService, requester: Principal, rule: str = "support-jit") -> dict[str, Any]:
    return svc.open_grant(
        requester, "bankdb", rule, "ticket SUP-42", GRANT_MS / 1000, ["group:dba"], 1, 600, now=T0
    )


@pytest.fixture
def pg_store(pg: TestPg, tmp_path: Path) -> Iterator[Store]:
    """The approval tables in a fresh database of the test cluster (as ``[audit] store`` puts them)."""
    suffix = secrets.token_hex(4)
    role, database, password = f"hoopssh_{suffix}", f"hoopgw_ssh_{suffix}", secrets.token_urlsafe(18)
    pg.cluster.add_role(Role(role, password=password))
    pg.cluster.create_database(database, owner=role)
    c = pg.cluster
    yield Store(tmp_path, f"postgresql://{role}:{password}@{c.host}:{c.port}/{database}")
    c.kill_backends(db=database)
    c.psql(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | Store:
    if request.param == "sqlite":
        return tmp_path
    store: Store = request.getfixturevalue("pg_store")
    return store


def test_a_grant_holds_for_the_person_however_they_log_in(where: Path | Store) -> None:
    svc = service(where)
    try:
        asked = open_grant(svc, ALICE)
        svc.decide(asked["id"], BOB, "approve", now=T0 + 1)
        at, end = T0 + 2, T0 + 1 + GRANT_MS
        for auth in PERSON_KINDS:
            alice = who("alice", auth, "support")
            assert svc.active_grants(alice, "bankdb", now_ms=at) == {"support-jit": end}, auth
            assert [g.rule for g in svc.grants_of(alice, now_ms=at)] == ["support-jit"], auth
            assert svc.active_grants(alice, "otherdb", now_ms=at) == {}, auth
            assert svc.active_grants(alice, "bankdb", now_ms=end) == {}, auth
        # an API key named alice is not alice, nor is bob over SSH
        assert svc.active_grants(who("alice", "apikey", "support", "dba"), "bankdb", now_ms=at) == {}
        assert svc.grants_of(who("alice", "apikey"), now_ms=at) == []
        assert svc.active_grants(who("bob", "sshkey", "dba"), "bankdb", now_ms=at) == {}
    finally:
        svc.store.close()


def test_a_grant_asked_for_over_ssh_is_the_persons_and_a_keys_stays_the_keys(tmp_path: Path) -> None:
    # grants are asked for with a token today; a record naming another person kind still counts as theirs
    svc = service(tmp_path)
    by_cert = open_grant(svc, who("alice", "sshcert", "support"))
    by_key = open_grant(svc, who("alice", "apikey", "support"), rule="bot-jit")
    svc.decide(by_cert["id"], BOB, "approve", now=T0 + 1)
    svc.decide(by_key["id"], BOB, "approve", now=T0 + 1)
    at, end = T0 + 2, T0 + 1 + GRANT_MS
    for auth in PERSON_KINDS:
        assert svc.active_grants(who("alice", auth), "bankdb", now_ms=at) == {"support-jit": end}, auth
    assert svc.active_grants(who("alice", "apikey"), "bankdb", now_ms=at) == {"bot-jit": end}


@pytest.mark.parametrize("auth", ["sshkey", "sshcert"])
def test_the_requester_cannot_decide_their_request_over_ssh(tmp_path: Path, auth: Auth) -> None:
    svc = service(tmp_path)
    grant = open_grant(svc, ALICE)
    statement = svc.open_request(ALICE, "bankdb", "SELECT 1", [], None, "hold", ["group:dba"], 1, 600, now=T0)
    for request in (grant, statement):
        for decision, reason in (("approve", None), ("deny", "no")):
            with pytest.raises(ApprovalError, match="nobody decides their own request"):
                svc.decide(request["id"], who("alice", auth, "dba"), decision, reason, now=T0 + 1)
        stored = svc.store.get(request["id"])
        assert stored is not None and stored.status == "pending" and stored.decisions == ()
    # someone else still can
    assert svc.decide(grant["id"], who("bob", auth, "dba"), "approve", now=T0 + 1)[1] == "approved"


def test_the_requester_sees_their_request_however_they_log_in(tmp_path: Path) -> None:
    svc = service(tmp_path)
    api = ApprovalApi(svc, Authenticator([]), load_signing_key(tmp_path).public_key())
    held = svc.open_request(
        who("alice", "sshkey"), "bankdb", "SELECT 1", [], None, "hold", ["group:dba"], 1, 600, now=T0
    )
    stored = svc.store.get(held["id"])
    assert stored is not None
    for auth in PERSON_KINDS:
        assert api.may_see(who("alice", auth), stored), auth
    assert not api.may_see(who("alice", "apikey"), stored)
    assert not api.may_see(who("mallory", "sshcert"), stored)
    assert api.may_see(who("bob", "sshcert", "dba"), stored)  # an approver


def test_removing_an_ssh_key_is_a_notice_like_revoking_an_api_key() -> None:
    assert severity("ssh_key_removed") == severity("key_revoked") == NOTICE
