"""The approvals HTTP API and the ``hoopgw approvals`` CLI, against a real gateway child process.

Requests are opened from this process with an :class:`ApprovalService` on the gateway's own ``data_dir``
(the same store and the same signing key), then listed, shown, decided and waited for through HTTP and
through the CLI.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from hoopgw.api import ApprovalApi, KeyApi, build_app, openapi_document
from hoopgw.api._access import AccessApi, access_routes
from hoopgw.api._callback import CallbackApi, callback_routes
from hoopgw.api._prompts import PromptApi, prompt_routes
from hoopgw.api._sessions import SessionApi, SessionReader, session_routes
from hoopgw.api._sshkeys import SshKeyApi, sshkey_routes
from hoopgw.approvals import (
    ApprovalService,
    ApprovalStore,
    check_binding,
    load_digest_key,
    load_public_key,
    load_signing_key,
    verify_record,
)
from hoopgw.audit import AuditStore
from hoopgw.audit._prompts import PromptStore
from hoopgw.config import load_config
from hoopgw.demo import toml_dumps
from hoopgw.identity import ApiKeyStore, Authenticator, LocalIssuer, Principal
from hoopgw.identity._keyfile import load_or_create_key
from hoopgw.identity._local import KEY_FILE
from hoopgw.identity._sshca import SshCertAuthority
from hoopgw.identity._sshkeys import SshKeyStore

from ._support.gateway import Gateway
from ._support.procs import hoopgw, wait_until

GatewayFactory = Any
SQL = "UPDATE accounts SET balance = $1 WHERE id = $2"
AUTH_ERROR = "authentication required: send 'Authorization: Bearer <token or API key>'"
#: who is who: requester alice (dev), approvers bob and carol (dba), stranger dave, admin root, auditor eve
PEOPLE: dict[str, tuple[str, ...]] = {
    "alice": ("dev",),
    "bob": ("dba",),
    "carol": ("dba", "dev"),
    "dave": ("ops",),
    "root": ("admins",),
    "eve": ("auditors",),
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        gateway={"admins": ["group:admins"], "auditors": ["group:auditors"]}
    )
    return gateway


@pytest.fixture(scope="module")
def service(gw: Gateway) -> Iterator[ApprovalService]:
    """An approval service on the gateway's data_dir: same store, same signing and digest keys."""
    store = ApprovalStore(gw.data_dir)
    yield ApprovalService(store, load_signing_key(gw.data_dir), load_digest_key(gw.data_dir))
    store.close()


_TOKENS: dict[tuple[str, Path], str] = {}


def token(gw: Gateway, who: str) -> str:
    """A local-issuer token of one of PEOPLE (minted here with the gateway's issuer key)."""
    key = (who, gw.data_dir)
    if key not in _TOKENS:
        _TOKENS[key] = LocalIssuer(gw.data_dir, "hoopgw").issue(who, PEOPLE[who], 3600)
    return _TOKENS[key]


def principal(who: str, groups: Sequence[str] | None = None) -> Principal:
    return Principal(subject=who, groups=frozenset(PEOPLE[who] if groups is None else groups), auth="token")


def open_request(
    service: ApprovalService,
    requester: Principal | None = None,
    *,
    approvers: Sequence[str] = ("group:dba",),
    required: int = 1,
    timeout_s: float = 600,
    sql: str = SQL,
) -> dict[str, Any]:
    return service.open_request(
        requester or principal("alice"),
        "bankdb",
        sql,
        ["'0'", "7"],
        "prompt-1",
        "writes-need-approval",
        approvers,
        required,
        timeout_s,
        params=["0", "7"],
    )


def call(
    gw: Gateway,
    method: str,
    path: str,
    body: Any = None,
    who: str | None = None,
    *,
    bearer: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request to the gateway API as ``who`` (or with ``bearer``); status, headers, JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        credential = bearer if bearer is not None else (token(gw, who) if who else None)
        if credential is not None:
            hdrs["Authorization"] = f"Bearer {credential}"
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw) if raw else None
    finally:
        conn.close()


def get(gw: Gateway, path: str, who: str | None = None, **kw: Any) -> tuple[int, Any]:
    status, _, data = call(gw, "GET", path, who=who, **kw)
    return status, data


def post(gw: Gateway, path: str, body: Any, who: str) -> tuple[int, Any]:
    status, _, data = call(gw, "POST", path, body, who)
    return status, data


def listed(gw: Gateway, who: str, query: str = "") -> dict[str, dict[str, Any]]:
    status, data = get(gw, "/api/approvals" + query, who)
    assert status == 200, data
    return {a["id"]: a for a in data}


def cli(gw: Gateway, who: str | None, *args: str, env: dict[str, str] | None = None) -> Any:
    extra = ["--token", token(gw, who)] if who else []
    return gw.run_cli("approvals", *args, *extra, env=env)


# ----------------------------------------------------------------------------------------- list / show
def test_an_api_key_named_like_a_user_is_not_that_user(gw: Gateway, service: ApprovalService) -> None:
    users = open_request(service)  # alice's, with her token
    bot = Principal(subject="alice", groups=frozenset({"dev"}), auth="apikey")
    keys = open_request(service, bot)  # an API key that happens to be called alice
    res = httpx.post(
        gw.api_url + "/api/keys",
        json={"name": "alice", "groups": ["dev"]},
        headers={"Authorization": f"Bearer {token(gw, 'root')}"},
        timeout=15,
        trust_env=False,
    )
    assert res.status_code == 201, res.text
    key = str(res.json()["key"])
    # the key sees what the key asked for, not the user's request; the user the other way round
    assert get(gw, f"/api/approvals/{keys['id']}", bearer=key)[0] == 200
    assert get(gw, f"/api/approvals/{users['id']}", bearer=key)[0] == 404
    assert get(gw, f"/api/approvals/{users['id']}", "alice")[0] == 200
    assert get(gw, f"/api/approvals/{keys['id']}", "alice")[0] == 404
    status, data = get(gw, "/api/approvals", bearer=key)
    assert status == 200 and users["id"] not in {a["id"] for a in data}


def test_list_shows_each_caller_what_they_may_see(gw: Gateway, service: ApprovalService) -> None:
    mine = open_request(service)  # alice's, decided by group:dba
    daves = open_request(service, principal("dave"), approvers=["user:erin"])
    both = {mine["id"], daves["id"]}
    seen = {who: set(listed(gw, who)) & both for who in PEOPLE}
    assert seen == {
        "alice": {mine["id"]},  # made it
        "bob": {mine["id"]},  # may decide it
        "carol": {mine["id"]},
        "dave": {daves["id"]},
        "root": both,  # admin
        "eve": both,  # auditor
    }
    status, data = get(gw, "/api/approvals", bearer=LocalIssuer(gw.data_dir, "hoopgw").issue("zed", [], 60))
    assert status == 200 and not {a["id"] for a in data} & both

    item = listed(gw, "bob")[mine["id"]]
    assert item == {
        "id": mine["id"],
        "status": "pending",
        "type": "approval_request",
        "connection": "bankdb",
        "requester": "alice",
        "rule": "writes-need-approval",
        "statement": SQL,
        "params_masked": ["'0'", "7"],
        "more_params_masked": [],
        "prompt_id": "prompt-1",
        "covers": {"kind": "statement"},
        "reason": None,
        "duration_ms": None,
        "approvers": ["group:dba"],
        "approvals_required": 1,
        "approvals": 0,
        "one_of_each_group": False,
        "created_at": mine["created_at"],
        "expires_at": mine["expires_at"],
        "closed_at": None,
        "created": item["created"],
        "expires": item["expires"],
        "closed": None,
        "close_reason": None,
    }
    assert item["expires_at"] - item["created_at"] == 600_000
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mine["created_at"] / 1000)) in item["created"]
    assert item["created"].endswith("Z")

    # newest first; filters; bad queries
    ids = list(listed(gw, "root"))
    assert ids.index(daves["id"]) < ids.index(mine["id"])
    assert list(listed(gw, "root", "?limit=1")) == [ids[0]]
    assert all(a["status"] == "pending" for a in listed(gw, "root", "?status=pending").values())
    assert mine["id"] not in listed(gw, "root", "?status=approved")
    for query, message in (
        ("?status=open", "status must be one of"),
        ("?limit=0", "limit must be"),
        ("?limit=x", "limit must be"),
        ("?limit=%C2%B2", "limit must be"),  # a superscript two: isdigit() but not int()
        ("?limit=" + "9" * 5000, "limit must be"),
        ("?owner=me", "unknown query parameter(s): owner"),
    ):
        status, data = get(gw, "/api/approvals" + query, "root")
        assert (status, message in data["error"]) == (400, True), (query, data)

    # the CLI: one JSON array of objects with id and status; a table for people
    res = cli(gw, "alice", "list", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {r["id"]: r["status"] for r in rows if r["id"] in both} == {mine["id"]: "pending"}
    res = cli(gw, "bob", "list", "--status", "pending")
    assert res.returncode == 0, res.stderr
    [line] = [line for line in res.stdout.splitlines() if line.startswith(mine["id"])]
    assert "pending" in line and "alice" in line and "0/1" in line and "UPDATE accounts SET" in line
    assert daves["id"] not in res.stdout and res.stdout.startswith("ID ")


def test_show(gw: Gateway, service: ApprovalService) -> None:
    record = open_request(service, approvers=["group:dba", "user:carol"], required=2)
    status, shown = get(gw, f"/api/approvals/{record['id']}", "carol")
    assert status == 200
    assert shown["id"] == record["id"] and shown["decisions"] == [] and shown["records"] == [record]
    assert shown["approvals_required"] == 2 and shown["approvers"] == ["group:dba", "user:carol"]
    status, records = get(gw, f"/api/approvals/{record['id']}/records", "alice")
    assert status == 200 and records == [record]
    # not visible and unknown: the same answer
    for path in (f"/api/approvals/{record['id']}", f"/api/approvals/{record['id']}/records"):
        status, data = get(gw, path, "dave")
        assert (status, data) == (404, {"error": f"no approval request {record['id']}"})
    status, data = get(gw, "/api/approvals/nosuchrequest00", "root")
    assert (status, data) == (404, {"error": "no approval request nosuchrequest00"})

    res = cli(gw, "bob", "show", record["id"])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith(f"approval request {record['id']}: pending\n")
    for text in (
        f"statement:   {SQL}",
        "requester:   alice",
        "approvers:   group:dba, user:carol",
        "approvals:   0/2",
        "parameters:  $1=\"'0'\", $2='7'",
        "rule:        writes-need-approval",
        "UTC (in 9m",
    ):
        assert text in out, (text, out)
    res = cli(gw, "bob", "show", record["id"], "--json")
    assert res.returncode == 0
    [obj] = json.loads(res.stdout)
    assert obj["id"] == record["id"] and obj["status"] == "pending" and obj["records"] == [record]
    res = cli(gw, "dave", "show", record["id"])
    assert res.returncode == 1 and f"no approval request {record['id']} (404)" in res.stderr


# -------------------------------------------------------------------------------------------- deciding
def test_approve_signs_a_decision_that_verifies(gw: Gateway, service: ApprovalService) -> None:
    record = open_request(service)
    res = cli(gw, "bob", "approve", record["id"], "--reason", "checked the ticket")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"approved request {record['id']}; it is approved and released\n"

    status, shown = get(gw, f"/api/approvals/{record['id']}", "alice")
    assert status == 200 and shown["status"] == "approved" and shown["approvals"] == 1
    assert shown["close_reason"] == "approved by bob" and shown["closed_at"] >= record["created_at"]
    [decision] = shown["decisions"]
    assert (decision["approver"], decision["decision"], decision["reason"]) == (
        "bob",
        "approve",
        "checked the ticket",
    )
    request_record, decision_record = shown["records"]
    assert request_record == record
    public = load_signing_key(gw.data_dir, create=False).public_key()
    verify_record(public, decision_record)
    check_binding(record, decision_record)
    assert decision_record["approver"] == {"subject": "bob", "auth": "token", "groups": ["dba"]}

    # closed: no more decisions
    status, data = post(gw, f"/api/approvals/{record['id']}/approve", {}, "carol")
    assert status == 409 and "is already closed (approved" in data["error"]
    res = cli(gw, "carol", "deny", record["id"], "--reason", "too late")
    assert res.returncode == 1 and "already closed" in res.stderr and "(409)" in res.stderr

    # the decision is in the audit trail
    with AuditStore.open(gw.data_dir, create=False) as audit:

        def decided() -> list[dict[str, Any]]:
            return [
                e["data"]
                for e in audit.events()
                if e["kind"] == "approval_decided" and e["data"]["request_id"] == record["id"]
            ]

        wait_until(lambda: bool(decided()), 5, what="approval_decided")
        [event] = decided()
    assert event == {
        "request_id": record["id"],
        "decision_id": decision_record["id"],
        "approver": "bob",
        "auth": "token",
        "decision": "approve",
        "status": "approved",
    }


def test_deny_needs_a_reason(gw: Gateway, service: ApprovalService) -> None:
    record = open_request(service)
    path = f"/api/approvals/{record['id']}/deny"
    for empty in (None, {}, {"reason": None}, {"reason": "   "}):
        status, _, data = call(gw, "POST", path, empty, "bob")
        assert status == 400 and "a denial needs a reason" in data["error"], (empty, data)
    bad: tuple[tuple[Any, str], ...] = (
        ({"reason": 3}, "reason must be a string"),
        ({"reason": "x", "why": "y"}, "unknown field(s): why"),
        (b"{nope", "not valid JSON"),
        (b"[]", "JSON object"),
    )
    for body, message in bad:
        status, _, data = call(gw, "POST", path, body, "bob")
        assert status == 400 and message in data["error"], (body, data)
    res = cli(gw, "bob", "deny", record["id"])
    assert res.returncode == 2 and "--reason" in res.stderr  # argparse: required
    status, data = post(gw, path, {"reason": "not during the freeze"}, "bob")
    assert status == 200 and data["id"] == record["id"] and data["status"] == "denied"
    assert data["decision"]["decision"] == "deny" and data["decision"]["reason"] == "not during the freeze"
    verify_record(load_signing_key(gw.data_dir, create=False).public_key(), data["decision"])
    assert listed(gw, "alice", "?status=denied")[record["id"]]["close_reason"] == (
        "denied by bob: not during the freeze"
    )


def test_refusals(gw: Gateway, service: ApprovalService) -> None:
    # alice is in group dba too, and asks: she still may not approve her own request
    record = open_request(service, principal("alice", ["dev", "dba"]))
    rid = record["id"]
    alice_dba = LocalIssuer(gw.data_dir, "hoopgw").issue("alice", ["dev", "dba"], 600)
    status, _, data = call(gw, "POST", f"/api/approvals/{rid}/approve", {}, bearer=alice_dba)
    assert status == 403 and "nobody decides their own request" in data["error"]
    # an admin sees it but is no approver; a stranger does not even see it
    status, data = post(gw, f"/api/approvals/{rid}/approve", {}, "root")
    assert (
        status == 403 and data["error"] == f"root is not an approver of request {rid} (approvers: group:dba)"
    )
    status, data = post(gw, f"/api/approvals/{rid}/approve", {}, "dave")
    assert (status, data) == (404, {"error": f"no approval request {rid}"})
    status, data = post(gw, "/api/approvals/nosuchrequest00/approve", {}, "bob")
    assert status == 404
    res = cli(gw, "root", "approve", rid)
    assert res.returncode == 1 and "not allowed (403)" in res.stderr and "not an approver" in res.stderr
    assert get(gw, f"/api/approvals/{rid}", "root")[1]["status"] == "pending"  # nothing was decided


def test_two_of_two(gw: Gateway, service: ApprovalService) -> None:
    record = open_request(service, required=2)
    rid = record["id"]
    status, data = post(gw, f"/api/approvals/{rid}/approve", {"reason": None}, "bob")
    assert status == 200 and data["status"] == "pending"
    assert listed(gw, "alice")[rid]["approvals"] == 1
    status, data = post(gw, f"/api/approvals/{rid}/approve", {}, "bob")  # counts once
    assert status == 409 and "an approver counts once" in data["error"]
    res = cli(gw, "carol", "approve", rid, "--json")
    assert res.returncode == 0, res.stderr
    [result] = json.loads(res.stdout)
    assert result["id"] == rid and result["status"] == "approved"
    assert result["decision"]["approver"]["subject"] == "carol"
    status, shown = get(gw, f"/api/approvals/{rid}", "eve")
    assert status == 200 and [d["approver"] for d in shown["decisions"]] == ["bob", "carol"]
    assert shown["approvals"] == 2 and len(shown["records"]) == 3


def test_expired_request_cannot_be_decided(gw: Gateway, service: ApprovalService) -> None:
    record = open_request(service, timeout_s=0.2)
    time.sleep(0.3)
    status, data = post(gw, f"/api/approvals/{record['id']}/approve", {}, "bob")
    assert status == 409 and "expired" in data["error"]
    assert get(gw, f"/api/approvals/{record['id']}", "bob")[1]["status"] == "expired"


def _expired_token(gw: Gateway) -> str:
    key = load_or_create_key(gw.data_dir / KEY_FILE)
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "local", "aud": "hoopgw", "sub": "bob", "groups": ["dba"], "jti": "x"}
    claims |= {"iat": now - 600, "nbf": now - 600, "exp": now - 120}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": LocalIssuer(gw.data_dir, "hoopgw").kid})


def test_credentials(gw: Gateway, service: ApprovalService) -> None:
    rid = open_request(service)["id"]
    expired = _expired_token(gw)
    assert jwt.get_unverified_header(expired)["kid"] == LocalIssuer(gw.data_dir, "hoopgw").kid
    for method, path in (
        ("GET", "/api/approvals"),
        ("GET", f"/api/approvals/{rid}"),
        ("GET", f"/api/approvals/{rid}/records"),
        ("GET", f"/api/approvals/{rid}/wait?timeout=0"),
        ("POST", f"/api/approvals/{rid}/approve"),
        ("POST", f"/api/approvals/{rid}/deny"),
    ):
        for bearer in (None, "", "garbage", token(gw, "bob")[:-4] + "AAAA", expired):
            status, headers, data = call(gw, method, path, b'{"reason": "x"}', bearer=bearer)
            assert (status, data) == (401, {"error": AUTH_ERROR}), (method, path, bearer)
            assert headers["www-authenticate"].startswith("Bearer")
    assert get(gw, f"/api/approvals/{rid}", "alice")[1]["status"] == "pending"

    res = gw.run_cli("approvals", "list")
    assert res.returncode == 1 and "no token" in res.stderr and "HOOPGW_TOKEN" in res.stderr
    res = gw.run_cli("approvals", "approve", rid, "--token", expired)
    assert res.returncode == 1 and "refused the token (401)" in res.stderr
    res = gw.run_cli("approvals", "list", "--json", env={"HOOPGW_TOKEN": token(gw, "bob")})
    assert res.returncode == 0 and rid in {a["id"] for a in json.loads(res.stdout)}


# --------------------------------------------------------------------------------------------- waiting
def _decide_later(gw: Gateway, rid: str, delay: float, decision: str = "approve") -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        status, data = post(gw, f"/api/approvals/{rid}/{decision}", {"reason": "ok"}, "bob")
        assert status == 200, data

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_long_poll(gw: Gateway, service: ApprovalService) -> None:
    rid = open_request(service)["id"]
    started = time.monotonic()
    status, data = get(gw, f"/api/approvals/{rid}/wait?timeout=1", "alice")
    assert status == 200 and data["status"] == "pending" and 0.9 < time.monotonic() - started < 5

    thread = _decide_later(gw, rid, 0.5)
    started = time.monotonic()
    status, data = get(gw, f"/api/approvals/{rid}/wait?timeout=30", "alice", timeout=40)
    took = time.monotonic() - started
    thread.join(10)
    assert status == 200 and data["status"] == "approved" and data["id"] == rid and 0.4 < took < 10
    # a closed request answers at once
    started = time.monotonic()
    assert get(gw, f"/api/approvals/{rid}/wait", "alice")[1]["status"] == "approved"
    assert time.monotonic() - started < 2
    for query in ("?timeout=301", "?timeout=-1", "?timeout=abc", "?timeout=nan", "?t=1"):
        status, data = get(gw, f"/api/approvals/{rid}/wait{query}", "alice")
        assert status == 400, (query, data)
    assert get(gw, f"/api/approvals/{rid}/wait", "dave")[0] == 404


def test_cli_wait(gw: Gateway, service: ApprovalService) -> None:
    rid = open_request(service)["id"]
    res = cli(gw, "alice", "wait", rid, "--timeout", "1s")
    assert res.returncode == 3 and f"request {rid} is still pending (0/1 approvals)" in res.stderr
    thread = _decide_later(gw, rid, 1.0, "deny")
    res = cli(gw, "alice", "wait", rid, "--timeout", "30s")
    thread.join(10)
    assert res.returncode == 1 and res.stdout == f"request {rid} is denied: denied by bob: ok\n", res.stderr
    rid = open_request(service)["id"]
    thread = _decide_later(gw, rid, 1.0)
    res = cli(gw, "alice", "wait", rid, "--json")
    thread.join(10)
    assert res.returncode == 0, res.stderr
    [obj] = json.loads(res.stdout)
    assert obj["id"] == rid and obj["status"] == "approved"


def _events(gw: Gateway, path: str, who: str, decide: threading.Thread | None = None) -> list[Any]:
    """Read a server-sent event stream to its end: the ``data`` of each ``status`` event."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=20)
    try:
        conn.request(
            "GET", path, headers={"Authorization": f"Bearer {token(gw, who)}", "Accept": "text/event-stream"}
        )
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
        events: list[Any] = []
        event = None
        for raw in resp:  # ends when the server ends the stream
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert event == "status"
                events.append(json.loads(line.removeprefix("data: ")))
                if decide is not None and len(events) == 1:
                    decide.start()
        return events
    finally:
        conn.close()


def test_event_stream(gw: Gateway, service: ApprovalService) -> None:
    rid = open_request(service)["id"]

    def approve() -> None:
        time.sleep(0.3)
        assert post(gw, f"/api/approvals/{rid}/approve", {}, "carol")[0] == 200

    started = time.monotonic()
    events = _events(gw, f"/api/approvals/{rid}/wait?timeout=30", "alice", threading.Thread(target=approve))
    assert [(e["id"], e["status"]) for e in events] == [(rid, "pending"), (rid, "approved")]
    assert time.monotonic() - started < 10
    # a closed request: one event, then the end; a pending one at the timeout: one event, then the end
    assert [e["status"] for e in _events(gw, f"/api/approvals/{rid}/wait", "bob")] == ["approved"]
    other = open_request(service)["id"]
    started = time.monotonic()
    assert [e["status"] for e in _events(gw, f"/api/approvals/{other}/wait?timeout=1", "bob")] == ["pending"]
    assert 0.9 < time.monotonic() - started < 5


# ----------------------------------------------------------------------------------- key and document
def test_signing_key(gw: Gateway, service: ApprovalService) -> None:
    status, headers, key = call(gw, "GET", "/api/signing-key")  # no credential needed
    assert status == 200 and headers["content-type"] == "application/json"
    res = gw.run_cli("signing-key", "--json")
    assert res.returncode == 0, res.stderr
    [local] = json.loads(res.stdout)
    assert key == {
        "kid": local["id"],
        "kty": "OKP",
        "alg": "EdDSA",
        "crv": "Ed25519",
        "x": local["x"],
        "pem": local["pem"],
    }
    verify_record(load_public_key(key["pem"].encode()), open_request(service))


def _in_process_app(tmp_path: Path) -> Any:
    """The API app with every route the gateway serves (as hoopgw/server.py builds it)."""
    path = tmp_path / "hoopgw.toml"
    path.write_text('[gateway]\ndata_dir = "var"\n')
    config = load_config(path)
    data_dir = config.gateway.data_dir
    service = ApprovalService(ApprovalStore(data_dir), load_signing_key(data_dir), load_digest_key(data_dir))
    auth = Authenticator([])
    keys = KeyApi(ApiKeyStore(data_dir), auth, ["group:admins"])
    approvals = ApprovalApi(service, auth, load_signing_key(data_dir).public_key())
    more = [
        *access_routes(AccessApi(config, service, auth)),
        *callback_routes(CallbackApi.from_config(service, config.approvals, None, None)),
        *prompt_routes(PromptApi(PromptStore(data_dir), data_dir, auth, lambda text: text)),
        *session_routes(SessionApi(SessionReader(data_dir), auth)),
        *sshkey_routes(SshKeyApi(SshKeyStore(data_dir), SshCertAuthority(data_dir), auth, ["group:admins"])),
    ]
    return build_app(lambda: {}, keys=keys, approvals=approvals, routes=more)


def test_openapi_document(gw: Gateway, tmp_path: Path) -> None:
    status, headers, served = call(gw, "GET", "/api/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert served == json.loads(orjson.dumps(openapi_document()))
    assert served["openapi"].startswith("3.1.") and served["info"]["title"]
    paths: dict[str, Any] = served["paths"]

    # every route the app serves is described, with each of its methods
    app = _in_process_app(tmp_path)
    # the document names path parameters without their Starlette converter ({id:path} -> {id})
    served_routes = {
        (re.sub(r":\w+}", "}", r.path), m.lower()) for r in app.routes for m in r.methods if m != "HEAD"
    }
    assert {("/api/access-requests", "post"), ("/api/approvals/callback", "post")} < served_routes
    assert {("/api/ssh-keys/{id}", "delete"), ("/api/ssh/certificate", "post")} < served_routes
    assert len(served_routes) == 25
    missing = sorted((p, m) for p, m in served_routes if m not in paths.get(p, {}))
    assert missing == []
    # and nothing is described that is not served
    described = {(p, m) for p, item in paths.items() for m in item}
    assert described == served_routes

    # every operation has responses; every reference resolves
    methods = {"get", "post", "put", "patch", "delete"}
    for path, item in paths.items():
        assert path.startswith("/") and set(item) <= methods, path
        for method, op in item.items():
            assert op["responses"] and all(code.isdigit() for code in op["responses"]), (path, method)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(_path_params(path)), (path, method)

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    found = set(refs(served))
    assert "#/components/schemas/Approval" in found
    for ref in found:
        node: Any = served
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


# -------------------------------------------------------------------------------------------- verify
def test_verify_by_id_from_the_store_and_from_the_api(
    gw: Gateway, service: ApprovalService, tmp_path: Path
) -> None:
    record = open_request(service)
    rid = record["id"]
    assert post(gw, f"/api/approvals/{rid}/approve", {"reason": "fine"}, "bob")[0] == 200

    res = gw.run_cli("approvals", "verify", rid)
    assert res.returncode == 0, res.stderr
    store = gw.data_dir / "audit.db"
    assert f"verifying the 2 record(s) of request {rid} from the store {store}" in res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"OK: record 1 (approval_request {rid}): alice on bankdb")
    assert lines[1].startswith("OK: record 2 (approval_decision ") and f"bound to request {rid}" in lines[1]

    # a config whose data_dir has no store (nor key): the records come from the API, the key from a file
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(
        toml_dumps(
            {"gateway": {"data_dir": str(tmp_path / "empty"), "api_listen": f"127.0.0.1:{gw.api_port}"}}
        )
    )
    pem = tmp_path / "gateway.pem"
    pem.write_text(gw.run_cli("signing-key").stdout)
    args = ["approvals", "verify", rid, "-c", str(elsewhere), "--public-key", str(pem)]
    res = hoopgw(*args, "--token", token(gw, "alice"), "--json", env={"HOOPGW_TOKEN": ""})
    assert res.returncode == 0, res.stderr
    assert f"from the gateway API at http://127.0.0.1:{gw.api_port}" in res.stderr
    assert [(r["type"], r["status"]) for r in json.loads(res.stdout)] == [
        ("approval_request", "valid"),
        ("approval_decision", "valid"),
    ]
    res = hoopgw(*args, env={"HOOPGW_TOKEN": ""})
    assert res.returncode == 1 and "no readable store" in res.stderr and "pass --token" in res.stderr
    res = hoopgw(*args, "--token", token(gw, "dave"))
    assert res.returncode == 1 and f"no approval request {rid} (404)" in res.stderr
    res = gw.run_cli("approvals", "verify", "nosuchrequest00")
    assert res.returncode == 1 and "has no request nosuchrequest00" in res.stderr

    # the same records, tampered with, in a file: refused
    status, records = get(gw, f"/api/approvals/{rid}/records", "bob")
    assert status == 200 and len(records) == 2
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(orjson.dumps([{**records[0], "statement": "SELECT 1"}, records[1]]))
    res = gw.run_cli("approvals", "verify", str(tampered))
    assert res.returncode == 1 and "bad signature" in res.stderr
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(records))
    assert gw.run_cli("approvals", "verify", str(good)).returncode == 0


def test_stopping_the_gateway_ends_long_polls_and_streams(gw: Gateway, service: ApprovalService) -> None:
    """Runs last: a stop answers waiting clients at once instead of holding the shutdown for minutes."""
    rid = open_request(service)["id"]
    answers: list[Any] = []

    def poll() -> None:
        answers.append(get(gw, f"/api/approvals/{rid}/wait?timeout=300", "alice", timeout=60))

    def stream() -> None:
        answers.append(_events(gw, f"/api/approvals/{rid}/wait?timeout=300", "bob"))

    threads = [threading.Thread(target=poll, daemon=True), threading.Thread(target=stream, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert answers == []
    started = time.monotonic()
    assert gw.stop() == 0
    assert time.monotonic() - started < 4
    for t in threads:
        t.join(5)
    polled = [a for a in answers if isinstance(a, tuple)]
    streamed = [a for a in answers if isinstance(a, list)]
    assert len(polled) == 1 and polled[0][0] == 200 and polled[0][1]["status"] == "pending"
    assert len(streamed) == 1 and [e["status"] for e in streamed[0]] == ["pending"]
