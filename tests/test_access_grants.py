"""Just-in-time access grants: the store and service (real SQLite, real keys), the engine, and end to end
through a real gateway child process: the API, the CLI and psql sessions opened only while granted."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hoopgw.approvals import (
    GRANT,
    MAX_GRANT_MS,
    AmbiguousPolicy,
    ApprovalError,
    ApprovalService,
    ApprovalStore,
    NoGrantablePolicy,
    check_binding,
    grant_ends,
    grantable_policy,
    jit_policies,
    load_digest_key,
    load_signing_key,
    sign_record,
    verify_record,
)
from hoopgw.approvals._store import _ACTIVE_GRANTS
from hoopgw.audit import DB_FILE
from hoopgw.config import load_config
from hoopgw.demo import toml_dumps
from hoopgw.identity._keystore import ApiKeyRecord, ApiKeyStore
from hoopgw.identity._principal import Principal
from hoopgw.policy._engine import policies_for

from ._support.gateway import Gateway
from ._support.procs import clean_env, wait_until

GatewayFactory = Any
T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z in ms
HOUR_MS = 3_600_000


def person(subject: str, *groups: str) -> Principal:
    return Principal(subject=subject, groups=frozenset(groups), auth="token")


def key(name: str, *groups: str, key_id: str | None = None) -> Principal:
    return Principal(subject=name, groups=frozenset(groups), auth="apikey", token_id=key_id)


ALICE = person("alice", "support", "dba")  # the requester, also in the approver group
BOB = person("bob", "dba")
CAROL = person("carol", "dba")
EVE = person("eve", "support")


def service(data_dir: Path, *, api_keys: ApiKeyStore | None = None) -> ApprovalService:
    return ApprovalService(
        ApprovalStore(data_dir), load_signing_key(data_dir), load_digest_key(data_dir), api_keys=api_keys
    )


def open_grant(
    svc: ApprovalService,
    *,
    requester: Principal = ALICE,
    connection: str = "bankdb",
    rule: str = "support-jit",
    duration_s: float = 1800,
    timeout_s: float = 600,
    approvers: tuple[str, ...] = ("group:dba",),
    required: int = 1,
    now: int = T0,
    **kwargs: Any,
) -> dict[str, Any]:
    return svc.open_grant(
        requester,
        connection,
        rule,
        "ticket SUP-42: customer balance looks wrong",
        duration_s,
        approvers,
        required,
        timeout_s,
        now=now,
        **kwargs,
    )


# ------------------------------------------------------------------------------- store and service
def test_open_approve_and_the_grant_runs_from_the_approval(tmp_path: Path) -> None:
    svc = service(tmp_path)
    events: list[tuple[str, str, str]] = []
    svc.add_listener(lambda event, request: events.append((event, request.id, request.type)))
    grant = open_grant(svc)
    public = load_signing_key(tmp_path).public_key()
    verify_record(public, grant)
    assert grant["type"] == GRANT and grant["rule"] == "support-jit" and grant["connection"] == "bankdb"
    assert grant["requester"] == {"subject": "alice", "auth": "token", "groups": ["dba", "support"]}
    assert (grant["duration_ms"], grant["created_at"], grant["expires_at"]) == (1_800_000, T0, T0 + 600_000)
    assert grant["reason"] == "ticket SUP-42: customer balance looks wrong"
    stored = svc.store.get(grant["id"])
    assert stored is not None and stored.status == "pending" and stored.record == grant
    assert stored.type == GRANT and stored.granted_until is None
    assert stored.public()["type"] == GRANT and stored.public()["rule"] == "support-jit"
    assert events == [("opened", grant["id"], GRANT)]
    # pending: nothing granted yet
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 10) == {}

    approved_at = T0 + 120_000  # two minutes later: the grant runs from here, not from the request
    decision, status = svc.decide(grant["id"], BOB, "approve", now=approved_at)
    assert status == "approved"
    verify_record(public, decision)
    check_binding(grant, decision)
    assert events[-1] == ("closed", grant["id"], GRANT)
    end = approved_at + 1_800_000
    stored = svc.store.get(grant["id"])
    assert stored is not None and stored.granted_until == end
    assert svc.active_grants(ALICE, "bankdb", now_ms=approved_at) == {"support-jit": end}
    assert svc.active_grants(ALICE, "bankdb", now_ms=end - 1) == {"support-jit": end}
    assert svc.active_grants(ALICE, "bankdb", now_ms=end) == {}
    assert svc.active_grants(ALICE, "otherdb", now_ms=approved_at) == {}
    running = svc.grants_of(ALICE, now_ms=approved_at + 1)
    assert [g.public() for g in running] == [
        {
            "id": grant["id"],
            "connection": "bankdb",
            "rule": "support-jit",
            "granted_at": approved_at,
            "until": end,
        }
    ]
    # another process on the same data_dir sees it (the gateway reads what the API wrote)
    assert service(tmp_path).active_grants(ALICE, "bankdb", now_ms=approved_at) == {"support-jit": end}


def test_a_denied_grant_never_runs(tmp_path: Path) -> None:
    svc = service(tmp_path)
    grant = open_grant(svc)
    with pytest.raises(ApprovalError, match="denial needs a reason"):
        svc.decide(grant["id"], BOB, "deny", "  ", now=T0 + 1)
    _, status = svc.decide(grant["id"], BOB, "deny", "use the read replica", now=T0 + 1)
    assert status == "denied"
    with pytest.raises(ApprovalError, match=r"already closed \(denied: denied by bob: use the read replica"):
        svc.decide(grant["id"], CAROL, "approve", now=T0 + 2)
    for at in (T0 + 2, T0 + 1_000_000):
        assert svc.active_grants(ALICE, "bankdb", now_ms=at) == {}
    stored = svc.store.get(grant["id"])
    assert stored is not None and stored.granted_until is None


def test_an_undecided_request_expires_and_cannot_be_approved_late(tmp_path: Path) -> None:
    svc = service(tmp_path)
    grant = open_grant(svc, timeout_s=60)
    assert [r.id for r in svc.expire_due(now=T0 + 59_999)] == []
    assert [r.id for r in svc.expire_due(now=T0 + 60_000)] == [grant["id"]]
    with pytest.raises(ApprovalError, match=r"already closed \(expired\)"):
        svc.decide(grant["id"], BOB, "approve", now=T0 + 60_001)
    # and a decision arriving after expires_at expires it rather than approving it
    late = open_grant(svc, timeout_s=60)
    with pytest.raises(ApprovalError, match="already closed"):
        svc.decide(late["id"], BOB, "approve", now=T0 + 60_000)
    stored = svc.store.get(late["id"])
    assert stored is not None and stored.status == "expired"
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 60_001) == {}


def test_nobody_approves_their_own_grant(tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path)
    now_s = time.time()
    keys.add(ApiKeyRecord("k1", "alice-bot", b"\1" * 32, ("dba",), "alice", now_s, now_s + 3600))
    svc = service(tmp_path, api_keys=keys)
    grant = open_grant(svc)
    # alice is in group:dba, but neither her token, a key named alice, nor a key she made decides it
    for who in (ALICE, key("alice", "dba"), key("alice-bot", "dba", key_id="k1")):
        with pytest.raises(ApprovalError, match="nobody decides their own request"):
            svc.decide(grant["id"], who, "approve", now=T0 + 1)
    with pytest.raises(ApprovalError, match="is not an approver"):
        svc.decide(grant["id"], EVE, "approve", now=T0 + 1)
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 2) == {}
    assert svc.decide(grant["id"], BOB, "approve", now=T0 + 3)[1] == "approved"


def test_two_of_two_with_one_of_each_group(tmp_path: Path) -> None:
    svc = service(tmp_path)
    dave = person("dave", "sec")
    grant = open_grant(svc, approvers=("group:dba", "group:sec"), required=2, one_of_each_group=True)
    assert svc.decide(grant["id"], BOB, "approve", now=T0 + 1)[1] == "pending"
    assert svc.decide(grant["id"], CAROL, "approve", now=T0 + 2)[1] == "pending"  # both dba
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 3) == {}
    assert svc.decide(grant["id"], dave, "approve", now=T0 + 4)[1] == "approved"
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 5) == {"support-jit": T0 + 4 + 1_800_000}


def test_a_grant_belongs_to_the_identity_that_asked(tmp_path: Path) -> None:
    svc = service(tmp_path)
    for_alice = open_grant(svc)
    for_bot = open_grant(svc, requester=key("ci-bot", "support"), rule="bot-jit", duration_s=600)
    svc.decide(for_alice["id"], BOB, "approve", now=T0 + 1)
    svc.decide(for_bot["id"], BOB, "approve", now=T0 + 1)
    at = T0 + 2
    assert svc.active_grants(ALICE, "bankdb", now_ms=at) == {"support-jit": T0 + 1 + 1_800_000}
    assert svc.active_grants(person("alice"), "bankdb", now_ms=at) == {"support-jit": T0 + 1 + 1_800_000}
    # not bob, not an API key called alice, not a person called ci-bot
    assert svc.active_grants(BOB, "bankdb", now_ms=at) == {}
    assert svc.active_grants(key("alice", "support", "dba"), "bankdb", now_ms=at) == {}
    assert svc.active_grants(person("ci-bot", "support"), "bankdb", now_ms=at) == {}
    assert svc.active_grants(key("ci-bot"), "bankdb", now_ms=at) == {"bot-jit": T0 + 1 + 600_000}


def test_only_approved_access_grants_count(tmp_path: Path) -> None:
    svc = service(tmp_path)
    # an approved held statement by alice under a policy of the same name is not a grant
    statement = svc.open_request(
        ALICE, "bankdb", "SELECT 1", [], None, "support-jit", ["group:dba"], 1, 600, now=T0
    )
    svc.decide(statement["id"], BOB, "approve", now=T0 + 1)
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 2) == {}
    # two grants of one policy: the later end counts
    short = open_grant(svc, duration_s=60)
    long = open_grant(svc, duration_s=7200)
    svc.decide(short["id"], BOB, "approve", now=T0 + 10)
    svc.decide(long["id"], BOB, "approve", now=T0 + 20)
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 30) == {"support-jit": T0 + 20 + 7_200_000}
    assert [g.rule for g in svc.grants_of(ALICE, now_ms=T0 + 30)] == ["support-jit", "support-jit"]
    assert len(svc.grants_of(ALICE, now_ms=T0 + 61_000)) == 1


def test_the_longest_grant_is_found_until_its_last_millisecond(tmp_path: Path) -> None:
    # active_grants reads only approvals recent enough to still run (expires_at >= now - MAX_GRANT_MS)
    svc = service(tmp_path)
    grant = open_grant(svc, duration_s=MAX_GRANT_MS / 1000, timeout_s=60)
    approved_at = T0 + 59_999  # the last moment before the request expires
    svc.decide(grant["id"], BOB, "approve", now=approved_at)
    end = approved_at + MAX_GRANT_MS
    assert svc.active_grants(ALICE, "bankdb", now_ms=end - 1) == {"support-jit": end}
    assert svc.active_grants(ALICE, "bankdb", now_ms=end) == {}


def test_active_grants_is_one_indexed_query(tmp_path: Path) -> None:
    svc = service(tmp_path)
    svc.store.list()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        args = {"floor": 0, "subject": "alice", "connection": "bankdb", "auth": "token", "now": 1}
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + _ACTIVE_GRANTS, args))
    finally:
        conn.close()
    assert "USING INDEX approval_requests_status (status=? AND expires_at>?)" in plan, plan
    assert "SCAN approval_requests" not in plan


def test_active_grants_does_not_wait_for_a_decision_waiting_for_the_write_lock(tmp_path: Path) -> None:
    svc = service(tmp_path)
    grant = open_grant(svc)
    blocker = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)  # another process, writing
    blocker.execute("BEGIN IMMEDIATE")
    decider = threading.Thread(target=svc.decide, args=(grant["id"], BOB, "approve"), kwargs={"now": T0 + 1})
    try:
        decider.start()
        time.sleep(0.3)  # the decision now holds the store's lock, waiting for the database's write lock
        assert decider.is_alive()
        started = time.monotonic()
        assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 2) == {}  # session start is not held up
        assert time.monotonic() - started < 1
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        decider.join(15)
    assert svc.active_grants(ALICE, "bankdb", now_ms=T0 + 2) == {"support-jit": T0 + 1 + 1_800_000}


def test_open_grant_refuses_bad_arguments(tmp_path: Path) -> None:
    svc = service(tmp_path)
    with pytest.raises(ValueError, match="needs a reason"):
        svc.open_grant(ALICE, "bankdb", "support-jit", " \n", 60, ["group:dba"], 1, 60)
    for duration_s in (0, -5, MAX_GRANT_MS / 1000 + 1):
        with pytest.raises(ValueError, match="at most 31 days"):
            open_grant(svc, duration_s=duration_s)
    with pytest.raises(ValueError, match="positive"):
        open_grant(svc, timeout_s=0)
    assert svc.store.list() == []
    # the store takes signed grant records only, and not longer than the longest grant
    body = {
        "version": 1,
        "type": GRANT,
        "id": "g1",
        "requester": {"subject": "alice", "auth": "token", "groups": []},
        "connection": "bankdb",
        "reason": "x",
        "duration_ms": MAX_GRANT_MS + 1,
        "rule": "support-jit",
        "approvers": ["group:dba"],
        "approvals_required": 1,
        "created_at": T0,
        "expires_at": T0 + 1,
    }
    with pytest.raises(ValueError, match="signed"):
        svc.store.add_request(body)
    with pytest.raises(ValueError, match="at most 31 days"):
        svc.store.add_request(sign_record(load_signing_key(tmp_path), body))
    assert svc.store.list() == []


# ------------------------------------------------------------------------------------------ engine
SAM = person("sam", "support")
SUPPORT_JIT: dict[str, Any] = {
    "name": "support-jit",
    "subjects": ["group:support"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approvers": ["group:dba"],
    "max_grant": "1h",
    "approval_timeout": "10m",
    "jit": True,
}
DBAS: dict[str, Any] = {"name": "dbas", "subjects": ["group:dba"], "connections": ["*"], "allow": ["*"]}


def config(tmp_path: Path, policies: list[dict[str, Any]]) -> Any:
    conns = [
        {
            "name": name,
            "type": "postgres",
            "listen": f"127.0.0.1:{port}",
            "upstream": "postgresql://app@127.0.0.1:1/bank",
        }
        for name, port in (("bankdb", 25432), ("other", 25433))
    ]
    path = tmp_path / "hoopgw.toml"
    path.write_text(toml_dumps({"connections": conns, "policy": policies}))
    return load_config(path)


def test_a_jit_policy_counts_only_until_the_grant_ends(tmp_path: Path) -> None:
    cfg = config(tmp_path, [SUPPORT_JIT, DBAS])
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    closed = policies_for(cfg, SAM, "bankdb")
    assert not closed.empty and not closed.at(now).any_access
    assert closed.at(now).decide({"read"}).verdict == "deny"
    assert closed.grantable == ("support-jit",)

    end = now + dt.timedelta(minutes=30)
    ends = grant_ends({"support-jit": int(end.timestamp() * 1000)})
    assert ends == {"support-jit": end}
    granted = policies_for(cfg, SAM, "bankdb", ends)
    assert granted.windowed and granted.next_change(now) == end
    assert granted.at(now).any_access
    assert granted.at(now).decide({"read"}).verdict == "allow"
    assert granted.at(now).decide({"write"}).verdict == "deny"  # the grant opens the policy, no more
    assert granted.at(end - dt.timedelta(milliseconds=1)).decide({"read"}).verdict == "allow"
    assert not granted.at(end).any_access
    assert granted.at(end).decide({"read"}).verdict == "deny"
    # a grant of a policy that does not name the caller, or of a non-jit policy, changes nothing
    assert not policies_for(cfg, person("eve", "dev"), "bankdb", ends).at(now).any_access
    dba = policies_for(cfg, BOB, "bankdb", {"dbas": now})
    assert dba.at(now + dt.timedelta(days=1)).decide({"write"}).verdict == "allow"
    # running grants show in grantable only while they have not started or have ended
    live = policies_for(cfg, SAM, "bankdb", {"support-jit": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)})
    assert live.grantable == ()


def test_which_jit_policy_an_access_request_is_for(tmp_path: Path) -> None:
    oncall = {**SUPPORT_JIT, "name": "oncall-jit", "subjects": ["user:sam"], "allow": ["read", "write"]}
    everywhere = {**SUPPORT_JIT, "name": "anywhere-jit", "subjects": ["user:ivy"], "connections": ["*"]}
    cfg = config(tmp_path, [SUPPORT_JIT, oncall, everywhere, DBAS])
    eve, ivy = person("eve", "support"), person("ivy")
    assert grantable_policy(cfg, eve, "bankdb").name == "support-jit"
    assert [p.name for p in jit_policies(cfg, SAM, "bankdb")] == ["support-jit", "oncall-jit"]
    with pytest.raises(AmbiguousPolicy, match="support-jit, oncall-jit; say which one") as err:
        grantable_policy(cfg, SAM, "bankdb")
    assert err.value.candidates == ("support-jit", "oncall-jit")
    assert grantable_policy(cfg, SAM, "bankdb", "oncall-jit").name == "oncall-jit"
    with pytest.raises(NoGrantablePolicy, match=r'"dbas" is not a jit policy.*support-jit, oncall-jit'):
        grantable_policy(cfg, SAM, "bankdb", "dbas")
    with pytest.raises(NoGrantablePolicy, match='no jit policy names sam on connection "other"'):
        grantable_policy(cfg, SAM, "other")
    with pytest.raises(NoGrantablePolicy, match="no jit policy names bob"):
        grantable_policy(cfg, BOB, "bankdb")  # dbas has access already, but nothing to ask for
    with pytest.raises(NoGrantablePolicy):
        grantable_policy(cfg, key("eve", "support-bots"), "bankdb")
    assert grantable_policy(cfg, ivy, "other").name == "anywhere-jit"


# --------------------------------------------------------------------------------- real gateway
SUPPORT_TOKEN = ("sam", ("support",))
ONCALL = {**SUPPORT_JIT, "name": "oncall-jit", "subjects": ["user:olga"], "approvals_required": 2}
POLICIES = {
    "policy": [
        {**SUPPORT_JIT, "approval_timeout": "2m"},
        ONCALL,
        DBAS,
    ]
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Gateway:
    gateway: Gateway = module_gateway_factory(extra=POLICIES)
    return gateway


def _http(gw: Gateway, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def _ask(gw: Gateway, token: str, **body: Any) -> tuple[int, Any]:
    return _http(gw, "POST", "/api/access-requests", {"connection": "bankdb", **body}, token)


def _gw_service(gw: Gateway) -> ApprovalService:
    return service(gw.data_dir)


def test_api_request_approve_and_list_grants(gw: Gateway) -> None:
    sam = gw.token(*SUPPORT_TOKEN)
    status, grants = _http(gw, "GET", "/api/access-grants", token=sam)
    assert (status, grants) == (200, [])
    before = int(time.time() * 1000)
    status, created = _ask(gw, sam, **{"for": "30m", "reason": "ticket SUP-1"})
    assert status == 201, created
    assert created["status"] == "pending" and created["type"] == GRANT
    assert (created["connection"], created["rule"], created["duration_ms"]) == (
        "bankdb",
        "support-jit",
        1_800_000,
    )
    assert created["requester"] == "sam" and created["approvers"] == ["group:dba"]
    assert created["reason"] == "ticket SUP-1" and created["granted_until"] is None
    assert before <= created["created_at"] and created["expires_at"] == created["created_at"] + 120_000
    record = created["record"]
    verify_record(load_signing_key(gw.data_dir).public_key(), record)
    assert record["id"] == created["id"] and record["requester"]["auth"] == "token"

    # approved by a dba through the service on the gateway's data_dir (another process)
    svc = _gw_service(gw)
    with pytest.raises(ApprovalError, match="nobody decides their own request"):
        svc.decide(created["id"], person("sam", "support", "dba"), "approve")
    _, state = svc.decide(created["id"], BOB, "approve")
    assert state == "approved"
    stored = svc.store.get(created["id"])
    assert stored is not None and stored.closed_at is not None
    status, grants = _http(gw, "GET", "/api/access-grants", token=sam)
    assert status == 200
    assert grants == [
        {
            "id": created["id"],
            "connection": "bankdb",
            "rule": "support-jit",
            "granted_at": stored.closed_at,
            "until": stored.closed_at + 1_800_000,
        }
    ]
    # the grant is sam's (token) only
    assert _http(gw, "GET", "/api/access-grants", token=gw.token("eve", ("support",)))[1] == []


def test_api_refuses_what_the_policy_does_not_grant(gw: Gateway) -> None:
    sam = gw.token(*SUPPORT_TOKEN)
    ok = {"for": "10m", "reason": "ticket SUP-2"}
    cases: list[tuple[str | None, dict[str, Any], int, str]] = [  # (who, body, status, error)
        (None, ok, 401, "authentication required"),
        ("bob", ok, 403, 'no jit policy names bob on connection "bankdb"'),
        ("sam", {**ok, "for": "2h"}, 400, 'for 2h is longer than policy "support-jit" grants (max_grant 1h)'),
        ("sam", {**ok, "for": 3601}, 400, "max_grant 1h"),
        ("sam", {**ok, "for": "soon"}, 400, "invalid duration"),
        ("sam", {**ok, "for": True}, 400, "for must be a duration"),
        ("sam", {"reason": "x"}, 400, "for is required"),
        ("sam", {**ok, "reason": "   "}, 400, "reason is required"),
        ("sam", {"for": "10m"}, 400, "reason is required"),
        ("sam", {**ok, "reason": "x" * 1001}, 400, "at most 1000 characters"),
        ("sam", {**ok, "reason": "a\x1b[2Jb"}, 400, "control characters"),
        ("sam", {**ok, "until": "never"}, 400, "unknown field(s): until"),
        ("sam", {**ok, "policy": "dbas"}, 403, '"dbas" is not a jit policy'),
        ("sam", {**ok, "connection": "nosuch"}, 404, 'no connection "nosuch"'),
        ("olga", ok, 400, "several jit policies name olga"),
    ]
    tokens = {"sam": sam, "bob": gw.token("bob", ("dba",)), "olga": gw.token("olga", ("support",))}
    for who, body, expected, needle in cases:
        token = tokens[who] if who is not None else None
        status, answer = _http(gw, "POST", "/api/access-requests", {"connection": "bankdb", **body}, token)
        assert status == expected, (who, body, answer)
        assert needle in answer["error"], (who, body, answer)
    status, answer = _http(gw, "POST", "/api/access-requests", b"[1, 2]", sam)
    assert status == 400 and "JSON object" in answer["error"]
    # none of those opened a request
    assert all(r.record["reason"] != "ticket SUP-2" for r in _gw_service(gw).store.list(limit=1000))
    # naming the policy settles the ambiguity; its rules (2 approvers) are the request's
    status, created = _ask(gw, tokens["olga"], **{**ok, "policy": "oncall-jit"})
    assert status == 201 and created["rule"] == "oncall-jit" and created["approvals_required"] == 2


def _cli_env(token: str) -> dict[str, str]:
    return {"HOOPGW_TOKEN": token}


def test_cli_request_and_list(gw: Gateway) -> None:
    eve = gw.token("eve", ("support",))
    res = gw.run_cli(
        "access", "request", "--connection", "bankdb", "--for", "15m", "--reason", "SUP-3", "--json",
        env=_cli_env(eve),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + gw.log_tail()
    [created] = json.loads(res.stdout)
    assert (created["status"], created["type"], created["duration_ms"]) == ("pending", GRANT, 900_000)
    assert created["rule"] == "support-jit" and created["requester"] == "eve"

    human = gw.run_cli(
        "access", "request", "--connection", "bankdb", "--for", "5m", "--reason", "SUP-4", "--token", eve
    )
    assert human.returncode == 0, human.stderr
    rid = human.stdout.split()[2]
    assert f"access request {rid} is pending" in human.stdout
    assert f"hoopgw approvals approve {rid}" in human.stdout and "group:dba" in human.stdout

    listed = gw.run_cli("access", "list", "--json", env=_cli_env(eve))
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    _gw_service(gw).decide(created["id"], CAROL, "approve")
    listed = gw.run_cli("access", "list", "--json", env=_cli_env(eve))
    assert [(g["id"], g["rule"]) for g in json.loads(listed.stdout)] == [(created["id"], "support-jit")]
    table = gw.run_cli("access", "list", env=_cli_env(eve))
    assert table.returncode == 0 and created["id"] in table.stdout and "UNTIL (UTC)" in table.stdout

    refused = gw.run_cli(
        "access", "request", "--connection", "bankdb", "--for", "3h", "--reason", "x", env=_cli_env(eve)
    )
    assert refused.returncode == 1 and "max_grant 1h" in refused.stderr
    bad = gw.run_cli("access", "request", "--connection", "bankdb", "--for", "later", "--reason", "x")
    assert bad.returncode == 2 and "invalid duration" in bad.stderr
    no_token = gw.run_cli("access", "list")
    assert no_token.returncode == 1 and "no token" in no_token.stderr


def _decide_http(gw: Gateway, rid: str, decision: str, reason: str | None = None) -> None:
    """A dba decides through the approvals API (the CLI's long poll is woken at once)."""
    body = {"reason": reason} if reason is not None else {}
    status, answer = _http(gw, "POST", f"/api/approvals/{rid}/{decision}", body, gw.token("bob", ("dba",)))
    assert status == 200, answer


def _wait_cli(gw: Gateway, token: str, reason: str, decide: Callable[[str], None]) -> tuple[int, str, str]:
    """Run ``access request --wait --json`` while ``decide(request id)`` decides it; (status, out, err)."""
    cmd = gw.cli("access", "request", "--connection", "bankdb", "--for", "20m", "--reason", reason)
    with subprocess.Popen(
        [*cmd, "--wait", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env({**gw.env, "HOOPGW_TOKEN": token}),
    ) as proc:
        try:
            decide(_pending_id(gw, reason))
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return proc.returncode, out, err


def _pending_id(gw: Gateway, reason: str) -> str:
    found: list[str] = []

    def opened() -> bool:
        found[:] = [
            r.id for r in _gw_service(gw).store.list(status="pending") if r.record.get("reason") == reason
        ]
        return bool(found)

    wait_until(opened, timeout=20, what=f"the access request {reason!r}")
    return found[0]


def test_cli_wait_exits_0_when_approved_and_1_when_denied(gw: Gateway) -> None:
    token = gw.token("wanda", ("support",))
    status, out, err = _wait_cli(gw, token, "SUP-5", lambda rid: _decide_http(gw, rid, "approve"))
    assert status == 0, err
    [final] = json.loads(out)
    assert final["status"] == "approved" and final["reason"] == "SUP-5"
    assert final["granted_until"] == final["closed_at"] + 1_200_000

    status, out, err = _wait_cli(gw, token, "SUP-6", lambda rid: _decide_http(gw, rid, "deny", "not today"))
    assert status == 1, (out, err)
    [final] = json.loads(out)
    assert final["status"] == "denied" and "not today" in final["close_reason"]


def test_psql_works_only_while_the_grant_runs(gw: Gateway) -> None:
    kw: dict[str, Any] = {"user": "sid", "groups": ("support",)}
    before = gw.psql("SELECT 40 + 2;", **kw)
    assert before.returncode != 0 and "access" in before.stderr, before.stdout + before.stderr
    assert gw.psql("SELECT 1;", user="dora", groups=("dba",)).stdout.strip() == "1"  # the gateway is fine

    token = gw.token("sid", ("support",))
    status, created = _ask(gw, token, **{"for": "5s", "reason": "SUP-7: a quick look"})
    assert status == 201, created
    still = gw.psql("SELECT 40 + 2;", **kw)
    assert still.returncode != 0  # pending is not granted
    _decide_http(gw, created["id"], "approve")
    granted = gw.psql("SELECT 40 + 2;", **kw)
    assert granted.returncode == 0, granted.stderr + gw.log_tail()
    assert granted.stdout.strip() == "42"
    live = psycopg.connect(gw.conninfo(**kw), autocommit=True)  # open when the grant ends
    # the policy allows read only: the grant opens no more than that
    write = gw.psql("CREATE TABLE jit_probe (x int);", **kw)
    assert write.returncode != 0 and "ddl" in write.stderr, write.stderr

    _, grants = _http(gw, "GET", "/api/access-grants", token=token)
    until = next(g["until"] for g in grants if g["id"] == created["id"])
    delay = until / 1000 - time.time()
    assert 0 < delay <= 5
    with live:
        assert live.execute("SELECT 1").fetchone() == (1,)
        time.sleep(delay + 0.2)
        after = gw.psql("SELECT 40 + 2;", **kw)
        assert after.returncode != 0 and "access" in after.stderr, after.stdout + after.stderr
        # the session that was open is ended at the grant's end, like at a closing time window
        with pytest.raises(psycopg.Error, match="no longer allowed"):
            live.execute("SELECT 1")


def test_help_lists_the_access_commands() -> None:
    for args in (("access", "--help"), ("access", "request", "--help"), ("access", "list", "--help")):
        res = subprocess.run(
            [sys.executable, "-m", "hoopgw", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert "not supported yet" not in res.stdout
