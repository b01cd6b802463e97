"""The approval store and decision service: real SQLite files, real keys, real threads, no mocks."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hoopgw.approvals import (
    ApprovalError,
    ApprovalService,
    ApprovalStore,
    RecordError,
    TooManyPending,
    check_binding,
    load_digest_key,
    load_signing_key,
    now_ms,
    sign_record,
    statement_digest,
    tally,
    verify_record,
)
from hoopgw.audit import DB_FILE, SCHEMA_VERSION
from hoopgw.identity._keystore import ApiKeyRecord, ApiKeyStore
from hoopgw.identity._principal import Principal

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z in ms
SQL = "UPDATE accounts SET balance = $1 WHERE id = $2"


def person(subject: str, *groups: str) -> Principal:
    return Principal(subject=subject, groups=frozenset(groups), auth="token")


def key(name: str, *groups: str, key_id: str | None = None) -> Principal:
    return Principal(subject=name, groups=frozenset(groups), auth="apikey", token_id=key_id)


ALICE = person("alice", "dev", "dba")  # the requester, also in the approver group
BOB = person("bob", "dba")
CAROL = person("carol", "dba")
DAVE = person("dave", "sec")
EVE = person("eve", "dev")


def service(data_dir: Path, *, api_keys: ApiKeyStore | None = None) -> ApprovalService:
    return ApprovalService(
        ApprovalStore(data_dir), load_signing_key(data_dir), load_digest_key(data_dir), api_keys=api_keys
    )


def open_request(
    svc: ApprovalService,
    *,
    requester: Principal = ALICE,
    approvers: tuple[str, ...] = ("group:dba",),
    required: int = 1,
    timeout_s: float = 600.0,
    now: int | None = T0,
    **kwargs: Any,
) -> dict[str, Any]:
    return svc.open_request(
        requester,
        "bankdb",
        SQL,
        ["***", "7"],
        "prompt-1",
        "writes",
        approvers,
        required,
        timeout_s,
        params=["4111111111111111", "7"],
        now=now,
        **kwargs,
    )


def test_migration_4_creates_the_approval_tables(tmp_path: Path) -> None:
    svc = service(tmp_path)
    svc.store.list()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"approval_requests", "approval_decisions", "api_keys"} <= tables
        with pytest.raises(sqlite3.IntegrityError):  # the status CHECK
            conn.execute(
                "INSERT INTO approval_requests (id, status, connection, requester, created_at, expires_at,"
                " record) VALUES ('x', 'maybe', 'c', 'r', 1, 2, '{}')"
            )
    finally:
        conn.close()


def test_open_then_approve_gives_verifiable_bound_records(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc)
    public = load_signing_key(tmp_path).public_key()
    verify_record(public, request)
    assert request["requester"] == {"subject": "alice", "auth": "token", "groups": ["dba", "dev"]}
    assert request["expires_at"] == T0 + 600_000
    # keyed, over the parameters as sent (not the masked ones, which are what the record shows)
    digest_key = load_digest_key(tmp_path)
    assert request["statement_digest"] == statement_digest(digest_key, SQL, ["4111111111111111", "7"])
    assert request["statement_digest"] != statement_digest(digest_key, SQL, ["***", "7"])
    assert request["params_masked"] == ["***", "7"]
    stored = svc.store.get(request["id"])
    assert stored is not None and stored.status == "pending" and stored.record == request

    decision, status = svc.decide(request["id"], BOB, "approve", now=T0 + 1000)
    assert status == "approved"
    verify_record(public, decision)
    check_binding(request, decision)
    stored = svc.store.get(request["id"])
    assert stored is not None
    assert (stored.status, stored.closed_at, stored.close_reason) == (
        "approved",
        T0 + 1000,
        "approved by bob",
    )
    assert [d.record for d in stored.decisions] == [decision]
    check_binding(stored.record, stored.decisions[0].record)
    # what the store keeps is the signed record: any change to it fails verification
    tampered = dict(stored.record, connection="otherdb")
    with pytest.raises(RecordError) as err:
        verify_record(public, tampered)
    assert err.value.code == "bad_signature"
    assert [r.id for r in svc.store.list(status="approved")] == [request["id"]]
    assert svc.store.list(status="pending") == []


def test_open_request_needs_the_parameters_as_sent(tmp_path: Path) -> None:
    svc = service(tmp_path)
    with pytest.raises(ValueError, match="parameters as sent"):
        svc.open_request(ALICE, "bankdb", SQL, ["***"], None, "writes", ["group:dba"], 1, 60)
    with pytest.raises(ValueError, match="positive"):
        open_request(svc, timeout_s=0)
    assert svc.store.list() == []


def test_the_requester_never_decides_their_own_request(tmp_path: Path) -> None:
    keys = ApiKeyStore(tmp_path)
    keys.add(ApiKeyRecord("k1", "ci-bot", b"\1" * 32, ("dba",), "alice", time.time(), time.time() + 3600))
    keys.add(ApiKeyRecord("k2", "deployer", b"\2" * 32, ("dba",), "bob", time.time(), time.time() + 3600))
    svc = service(tmp_path, api_keys=keys)
    request = open_request(svc)
    rid = request["id"]
    refusals = [
        (ALICE, "approve"),  # her own token, although she is in group:dba
        (key("alice", "dba"), "approve"),  # an API key with her subject is her
        (key("alice", "dba"), "deny"),
        (key("ci-bot", "dba", key_id="k1"), "approve"),  # a key she created is her
    ]
    for who, what in refusals:
        with pytest.raises(ApprovalError, match="nobody decides their own request") as err:
            svc.decide(rid, who, what, "no", now=T0 + 10)
        assert "alice" in str(err.value)
    with pytest.raises(ApprovalError, match="through an API key created by alice"):
        svc.decide(rid, key("ci-bot", "dba", key_id="k1"), "approve", now=T0 + 10)
    stored = svc.store.get(rid)
    assert stored is not None and stored.status == "pending" and stored.decisions == ()

    # the other way round: a request made through bob's key cannot be approved by bob
    by_key = open_request(svc, requester=key("deployer", "dba", key_id="k2"))
    with pytest.raises(ApprovalError, match="nobody decides their own request"):
        svc.decide(by_key["id"], BOB, "approve", now=T0 + 10)
    assert svc.decide(by_key["id"], CAROL, "approve", now=T0 + 10)[1] == "approved"
    assert svc.decide(rid, BOB, "approve", now=T0 + 10)[1] == "approved"


def test_only_listed_approvers_decide(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc, approvers=("group:dba", "user:dave"))
    rid = request["id"]
    for outsider in (EVE, key("dave", "sec"), key("carol", "dev")):  # user: names a token, not a key
        with pytest.raises(ApprovalError, match="is not an approver"):
            svc.decide(rid, outsider, "approve", now=T0 + 5)
        with pytest.raises(ApprovalError, match="is not an approver"):
            svc.decide(rid, outsider, "deny", "nope", now=T0 + 5)
    with pytest.raises(ApprovalError, match="'approve' or 'deny'"):
        svc.decide(rid, BOB, "maybe", now=T0 + 5)
    stored = svc.store.get(rid)
    assert stored is not None and stored.status == "pending" and stored.decisions == ()
    assert svc.decide(rid, DAVE, "approve", now=T0 + 5)[1] == "approved"


def test_two_of_two_and_an_approver_counts_once(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc, required=2)
    rid = request["id"]
    first, status = svc.decide(rid, BOB, "approve", now=T0 + 1)
    assert status == "pending"
    for again in (BOB, key("bob", "dba")):  # the same person, whatever the auth kind
        with pytest.raises(ApprovalError, match="already approved"):
            svc.decide(rid, again, "approve", now=T0 + 2)
    stored = svc.store.get(rid)
    assert stored is not None and stored.status == "pending" and len(stored.decisions) == 1
    second, status = svc.decide(rid, CAROL, "approve", "looks fine", now=T0 + 3)
    assert status == "approved"
    stored = svc.store.get(rid)
    assert stored is not None and stored.close_reason == "approved by bob, carol"
    public = load_signing_key(tmp_path).public_key()
    for d in (first, second):
        verify_record(public, d)
        check_binding(request, d)
    assert stored.public()["approvals"] == 2


def test_a_denial_needs_a_reason_and_closes_the_request(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc, required=2)
    rid = request["id"]
    svc.decide(rid, BOB, "approve", now=T0 + 1)
    for reason in (None, "", "   "):
        with pytest.raises(ApprovalError, match="denial needs a reason"):
            svc.decide(rid, CAROL, "deny", reason, now=T0 + 2)
    decision, status = svc.decide(rid, CAROL, "deny", "not during business hours", now=T0 + 2)
    assert status == "denied" and decision["reason"] == "not during business hours"
    check_binding(request, decision)
    with pytest.raises(ApprovalError, match=r"already closed \(denied: denied by carol: not during"):
        svc.decide(rid, person("frank", "dba"), "approve", now=T0 + 3)
    stored = svc.store.get(rid)
    assert stored is not None and stored.status == "denied" and len(stored.decisions) == 2


def test_decisions_after_expiry_or_close_are_refused(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc, timeout_s=60)
    rid = request["id"]
    with pytest.raises(ApprovalError, match=r"already closed \(expired\)"):
        svc.decide(rid, BOB, "approve", now=T0 + 60_000)
    stored = svc.store.get(rid)
    assert stored is not None
    assert (stored.status, stored.closed_at, stored.close_reason) == ("expired", T0 + 60_000, "expired")
    assert stored.decisions == ()

    approved = open_request(svc)
    svc.decide(approved["id"], BOB, "approve", now=T0 + 1)
    with pytest.raises(ApprovalError, match=r"already closed \(approved: approved by bob\)"):
        svc.decide(approved["id"], CAROL, "deny", "too late", now=T0 + 2)

    voided = open_request(svc)
    svc.void(voided["id"], "the session ended while the statement was held", now=T0 + 5)
    with pytest.raises(ApprovalError, match=r"already closed \(void: the session ended"):
        svc.decide(voided["id"], BOB, "approve", now=T0 + 6)
    with pytest.raises(ApprovalError, match="already closed"):
        svc.void(voided["id"], "again", now=T0 + 7)
    with pytest.raises(ApprovalError, match="no approval request nope"):
        svc.decide("nope", BOB, "approve", now=T0 + 1)


def test_the_store_refuses_a_late_decision_even_if_the_caller_skipped_the_checks(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc, timeout_s=1)
    decision, _ = service(tmp_path).decide(open_request(svc)["id"], BOB, "approve", now=T0 + 1)
    # a decision record for `request`, signed, but made after it expired
    late = {k: v for k, v in decision.items() if k != "signature"}
    late.update(request_id=request["id"], decided_at=T0 + 1000, id="late")
    signed = sign_record(load_signing_key(tmp_path), late)
    with pytest.raises(ApprovalError, match="expired before this decision"):
        svc.store.add_decision(signed, tally)
    stored = svc.store.get(request["id"])
    assert stored is not None and stored.status == "expired" and stored.decisions == ()


def test_expire_due_expires_only_what_is_due(tmp_path: Path) -> None:
    svc = service(tmp_path)
    short = open_request(svc, timeout_s=10)
    long = open_request(svc, timeout_s=100)
    assert [r.id for r in svc.expire_due(now=T0 + 9_999)] == []
    assert [r.id for r in svc.expire_due(now=T0 + 10_000)] == [short["id"]]
    assert [r.id for r in svc.store.list(status="pending")] == [long["id"]]
    assert [r.id for r in svc.store.list(status="expired")] == [short["id"]]
    assert svc.expire_due(now=T0 + 10_000) == []


def test_a_pending_request_survives_a_restart(tmp_path: Path) -> None:
    first = service(tmp_path)
    request = open_request(first, required=2)
    first.decide(request["id"], BOB, "approve", now=T0 + 1)
    first.store.close()
    del first

    again = service(tmp_path)  # new store, new connection, keys read back from data_dir
    stored = again.store.get(request["id"])
    assert stored is not None and stored.status == "pending" and stored.record == request
    with pytest.raises(ApprovalError, match="already approved"):
        again.decide(request["id"], BOB, "approve", now=T0 + 2)
    decision, status = again.decide(request["id"], CAROL, "approve", now=T0 + 2)
    assert status == "approved"
    public = load_signing_key(tmp_path).public_key()
    verify_record(public, decision)
    check_binding(stored.record, decision)


def _race(tmp_path: Path, rid: str, approvers: list[Principal]) -> list[str]:
    """Each approver approves ``rid`` at once, each through its own store (own sqlite connection)."""
    services = [service(tmp_path) for _ in approvers]
    for s in services:
        s.store.get(rid)  # open the connections before the race
    barrier = threading.Barrier(len(approvers))
    results: list[str] = []
    lock = threading.Lock()

    def run(svc: ApprovalService, who: Principal) -> None:
        barrier.wait(timeout=10)
        try:
            _, status = svc.decide(rid, who, "approve", now=T0 + 5)
            outcome = f"ok:{status}"
        except ApprovalError as exc:
            outcome = f"refused:{exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(s, w)) for s, w in zip(services, approvers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    for s in services:
        s.store.close()
    return results


def test_concurrent_approvals_never_double_count(tmp_path: Path) -> None:
    svc = service(tmp_path)
    dave = person("dave", "dba")
    for _ in range(15):
        request = open_request(svc, required=2)
        results = _race(tmp_path, request["id"], [BOB, CAROL, dave])
        assert len(results) == 3
        ok = [r for r in results if r.startswith("ok:")]
        assert len(ok) == 2, results
        assert sorted(ok) == ["ok:approved", "ok:pending"], results
        stored = svc.store.get(request["id"])
        assert stored is not None and stored.status == "approved"
        assert len(stored.decisions) == 2

        # the same approver twice at once (two connections): counted once
        twice = open_request(svc, required=2)
        results = _race(tmp_path, twice["id"], [BOB, BOB])
        assert sorted(r.split(":")[0] for r in results) == ["ok", "refused"], results
        assert any("already approved" in r for r in results), results
        stored = svc.store.get(twice["id"])
        assert stored is not None and stored.status == "pending" and len(stored.decisions) == 1


def test_one_of_each_group_needs_a_different_approver_per_group(tmp_path: Path) -> None:
    svc = service(tmp_path)
    request = open_request(svc, approvers=("group:dba", "group:sec"), required=2, one_of_each_group=True)
    rid = request["id"]
    assert svc.decide(rid, BOB, "approve", now=T0 + 1)[1] == "pending"
    assert svc.decide(rid, CAROL, "approve", now=T0 + 2)[1] == "pending"  # two dba, no sec
    assert svc.decide(rid, DAVE, "approve", now=T0 + 3)[1] == "approved"

    # one person in both groups covers one of them only; a dba-only approver then covers the other
    both = person("grace", "dba", "sec")
    second = open_request(svc, approvers=("group:dba", "group:sec"), required=1, one_of_each_group=True)
    assert svc.decide(second["id"], both, "approve", now=T0 + 1)[1] == "pending"
    assert svc.decide(second["id"], BOB, "approve", now=T0 + 2)[1] == "approved"

    # without the mode, two approvers of the same group are enough
    plain = open_request(svc, approvers=("group:dba", "group:sec"), required=2)
    svc.decide(plain["id"], BOB, "approve", now=T0 + 1)
    assert svc.decide(plain["id"], CAROL, "approve", now=T0 + 2)[1] == "approved"


def test_wait_resolves_on_a_decision_from_another_thread(tmp_path: Path) -> None:
    svc = service(tmp_path)
    approve = open_request(svc, now=None)
    deny = open_request(svc, now=None, required=2)

    async def main() -> None:
        waiting = asyncio.create_task(svc.wait(approve["id"]))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await asyncio.to_thread(svc.decide, approve["id"], BOB, "approve")
        done = await asyncio.wait_for(waiting, 5)
        assert done.status == "approved" and done.close_reason == "approved by bob"

        waiting = asyncio.create_task(svc.wait(deny["id"]))
        await asyncio.to_thread(svc.decide, deny["id"], BOB, "approve")
        await asyncio.sleep(0.05)
        assert not waiting.done()  # 1 of 2: still pending
        await asyncio.to_thread(svc.decide, deny["id"], CAROL, "deny", "wrong table")
        done = await asyncio.wait_for(waiting, 5)
        assert done.status == "denied" and done.close_reason == "denied by carol: wrong table"

        # a closed request: at once
        assert (await asyncio.wait_for(svc.wait(approve["id"]), 1)).status == "approved"

    asyncio.run(main())


def test_wait_resolves_on_expiry_and_on_void(tmp_path: Path) -> None:
    svc = service(tmp_path)
    soon = open_request(svc, now=None, timeout_s=0.3)  # real clock
    later = open_request(svc, now=None, timeout_s=3600)  # the timer is told what time it is
    held = open_request(svc, now=None, timeout_s=7200)  # the timer of `later` expires all due by then

    async def main() -> None:
        started = time.monotonic()
        done = await asyncio.wait_for(svc.wait(soon["id"]), 5)
        assert done.status == "expired" and done.closed_at == soon["expires_at"]
        assert time.monotonic() - started < 3

        done = await asyncio.wait_for(svc.wait(later["id"], now=later["expires_at"] - 50), 5)
        assert done.status == "expired"

        waiting = asyncio.create_task(svc.wait(held["id"]))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(svc.void, held["id"], "the upstream session ended")
        done = await asyncio.wait_for(waiting, 5)
        assert done.status == "void" and done.close_reason == "the upstream session ended"

        with pytest.raises(ApprovalError, match="no approval request"):
            await svc.wait("nope")

    asyncio.run(main())
    assert now_ms() >= soon["expires_at"]


def test_a_requester_has_a_bounded_number_of_held_statements_pending(tmp_path: Path) -> None:
    svc = service(tmp_path)
    first = [open_request(svc, max_pending=3) for _ in range(3)]
    with pytest.raises(TooManyPending, match="already has 3 pending"):
        open_request(svc, max_pending=3)
    open_request(svc, requester=person("bob", "dev"), max_pending=3)  # per requester
    svc.decide(first[0]["id"], person("dora", "dba"), "deny", "no", now=T0 + 1)
    open_request(svc, max_pending=3)  # a decided one frees its place


def test_a_decision_by_another_process_wakes_the_waiter_at_the_next_poll(tmp_path: Path) -> None:
    here, there = service(tmp_path), service(tmp_path)  # two gateways sharing one data_dir
    request = open_request(here, now=None)

    async def run() -> str:
        waiting = asyncio.ensure_future(here.wait(request["id"]))
        await asyncio.sleep(0.1)
        there.decide(request["id"], person("dora", "dba"), "approve")
        await asyncio.sleep(0.1)
        assert not waiting.done()  # nothing in this process heard of it
        assert here.poll_waiters() == 1
        return (await asyncio.wait_for(waiting, 5)).status

    assert asyncio.run(run()) == "approved"
