"""Adversarial review of approvals, access grants, the callback and ``hoopgw approvals verify``.

Each test is one attack, tried as an outsider would: an authenticated user, an AI agent with an API key,
someone who reaches the loopback API, or someone who sees the webhook messages. Most run against a real
gateway child process; requests are opened from this process with an ApprovalService on the gateway's
own data_dir (same store, same keys) where a live PostgreSQL session is not the point.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hoopgw.approvals import (
    ApprovalError,
    ApprovalService,
    ApprovalStore,
    load_digest_key,
    load_signing_key,
    sign_record,
)
from hoopgw.approvals._webhooks import json_message, sign, slack_message
from hoopgw.audit import AuditStore
from hoopgw.demo import toml_dumps
from hoopgw.identity import KEY_PATTERN, ApiKeyStore, LocalIssuer, Principal

from ._support.gateway import Gateway
from ._support.procs import hoopgw, wait_until

GatewayFactory = Any
SECRET = "adversarial-callback-secret-0123456789"
KEY = SECRET.encode()
SQL = "UPDATE accounts SET balance = $1 WHERE id = $2"

SUPPORT_JIT: dict[str, Any] = {
    "name": "support-jit",
    "subjects": ["group:support"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "jit": True,
    "approvers": ["group:dba"],
    "max_grant": "1h",
    "approval_timeout": "10m",
}
PAIR_JIT: dict[str, Any] = {
    **SUPPORT_JIT,
    "name": "pair-jit",
    "subjects": ["group:pair"],
    "approvals_required": 2,
}
DBA: dict[str, Any] = {"name": "dba", "subjects": ["group:dba"], "connections": ["*"], "allow": ["*"]}
#: who is who: (groups) of each person with a token
PEOPLE: dict[str, tuple[str, ...]] = {
    "alice": ("admins", "support", "dba"),  # an admin who may also ask for access and approve
    "root": ("admins", "dba"),
    "bob": ("dba",),
    "carol": ("dba",),
    "pat": ("pair",),
    "sam": ("support",),
    "zed": (),
    "audrey": ("auditors",),
}


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        gateway={"admins": ["group:admins"], "auditors": ["group:auditors"]},
        extra={
            "policy": [SUPPORT_JIT, PAIR_JIT, DBA],
            "approvals": {
                "callback_secret": "env:TEST_ADV_CALLBACK_SECRET",
                "callback_max_age": "60s",
                "callback_users": [
                    {"user": "UBOB", "subject": "bob", "groups": ["dba"]},
                    {"user": "UALICE", "subject": "alice", "groups": ["dba"]},
                    {"user": "UROOT", "subject": "root", "groups": ["dba"]},
                ],
            },
        },
        env={"TEST_ADV_CALLBACK_SECRET": SECRET},
    )
    return gateway


@pytest.fixture(scope="module")
def svc(gw: Gateway) -> Iterator[ApprovalService]:
    """An approval service on the gateway's data_dir, knowing its API keys like the gateway's own."""
    store = ApprovalStore(gw.data_dir)
    keys = ApiKeyStore(gw.data_dir)
    yield ApprovalService(store, load_signing_key(gw.data_dir), load_digest_key(gw.data_dir), api_keys=keys)
    store.close()
    keys.close()


_TOKENS: dict[tuple[str, Path], str] = {}


def token(gw: Gateway, who: str) -> str:
    if (who, gw.data_dir) not in _TOKENS:
        _TOKENS[who, gw.data_dir] = LocalIssuer(gw.data_dir, "hoopgw").issue(who, PEOPLE[who], 3600)
    return _TOKENS[who, gw.data_dir]


def person(who: str) -> Principal:
    return Principal(subject=who, groups=frozenset(PEOPLE[who]), auth="token")


def call(
    gw: Gateway,
    method: str,
    path: str,
    body: Any = None,
    *,
    bearer: str | None = None,
    headers: dict[str, Any] | None = None,
    timeout: float = 15,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if bearer is not None:
            hdrs["Authorization"] = f"Bearer {bearer}"
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw
    finally:
        conn.close()


def as_(gw: Gateway, who: str) -> str:
    return token(gw, who)


def make_key(gw: Gateway, creator: str, name: str, groups: list[str]) -> str:
    """An API key made through the API by ``creator`` (an admin's token)."""
    status, created = call(gw, "POST", "/api/keys", {"name": name, "groups": groups}, bearer=as_(gw, creator))
    assert status == 201, created
    return str(created["key"])


def ask_access(gw: Gateway, bearer: str, policy: str = "support-jit", **body: Any) -> dict[str, Any]:
    status, created = call(
        gw,
        "POST",
        "/api/access-requests",
        {"connection": "bankdb", "for": "10m", "reason": "adversarial review", "policy": policy, **body},
        bearer=bearer,
    )
    assert status == 201, created
    return dict(created)


def decide(
    gw: Gateway, rid: str, bearer: str, decision: str = "approve", reason: str | None = None
) -> tuple[int, Any]:
    body = {"reason": reason} if reason is not None else {}
    return call(gw, "POST", f"/api/approvals/{rid}/{decision}", body, bearer=bearer)


def status_of(svc: ApprovalService, rid: str) -> str:
    request = svc.store.get(rid)
    assert request is not None
    return request.status


def open_statement(
    svc: ApprovalService,
    requester: Principal,
    *,
    approvers: tuple[str, ...] = ("group:dba",),
    required: int = 1,
    timeout_s: float = 600,
    statement: str | None = None,
) -> str:
    record = svc.open_request(
        requester, "bankdb", SQL, ["***", "7"], None, "writes", approvers, required, timeout_s,
        params=["4111111111111111", "7"], statement_masked=statement,
    )  # fmt: skip
    return str(record["id"])


# ------------------------------------------------------------------------ self-approval through API keys
def test_a_key_i_created_cannot_approve_my_request(gw: Gateway, svc: ApprovalService) -> None:
    """Alice (an admin, also a dba) makes herself a key in group dba, then approves her own access request
    with it. The key's created_by is stored as ``user:alice``: it must still count as alice."""
    alice_bot = make_key(gw, "alice", "alice-bot", ["dba"])
    mine = ask_access(gw, as_(gw, "alice"))
    status, answer = decide(gw, mine["id"], alice_bot)
    assert status == 403, answer
    assert "nobody decides their own request" in answer["error"]
    assert "through an API key created by alice" in answer["error"]
    assert status_of(svc, mine["id"]) == "pending"

    # the other way round: a request made through a key she made is not hers to approve
    agent = make_key(gw, "alice", "alice-agent", ["support"])
    by_key = ask_access(gw, agent)
    status, answer = decide(gw, by_key["id"], as_(gw, "alice"))
    assert status == 403 and "nobody decides their own request" in answer["error"], answer
    # ... nor through the Slack callback, as alice
    response = click(gw, "UALICE", "approve", by_key["id"])
    assert response[0] == 403 and "nobody decides their own request" in response[1]["error"], response
    assert status_of(svc, by_key["id"]) == "pending"
    # and alice sees what her key asked for (it is hers)
    assert call(gw, "GET", f"/api/approvals/{by_key['id']}", bearer=as_(gw, "alice"))[0] == 200
    # bob decides both
    assert decide(gw, mine["id"], as_(gw, "bob"))[1]["status"] == "approved"
    assert decide(gw, by_key["id"], as_(gw, "bob"))[1]["status"] == "approved"


def test_my_token_and_a_key_i_created_count_once(gw: Gateway, svc: ApprovalService) -> None:
    """Two approvals needed: root approves with his token, then again with a key he made."""
    root_bot = make_key(gw, "root", "root-bot", ["dba"])
    rid = ask_access(gw, as_(gw, "pat"), policy="pair-jit")["id"]
    assert decide(gw, rid, as_(gw, "root"))[1]["status"] == "pending"
    status, answer = decide(gw, rid, root_bot)
    assert status == 409 and "counts once" in answer["error"], answer
    assert status_of(svc, rid) == "pending"
    request = svc.store.get(rid)
    assert request is not None and len(request.decisions) == 1
    assert decide(gw, rid, as_(gw, "carol"))[1]["status"] == "approved"


def test_parallel_approvals_by_one_person_count_once(gw: Gateway, svc: ApprovalService) -> None:
    """Bob fires 24 approvals at once, through his token and a key with his name (made by root)."""
    bob_key = make_key(gw, "root", "bob", ["dba"])
    rid = ask_access(gw, as_(gw, "pat"), policy="pair-jit")["id"]
    bearers = [as_(gw, "bob"), bob_key] * 12
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda b: decide(gw, rid, b), bearers, timeout=60))
    codes = sorted(code for code, _ in results)
    assert codes.count(200) == 1 and codes.count(409) == 23, results
    request = svc.store.get(rid)
    assert request is not None and request.status == "pending" and len(request.decisions) == 1
    assert decide(gw, rid, as_(gw, "carol"))[1]["status"] == "approved"


def _local_service(data_dir: Path) -> ApprovalService:
    return ApprovalService(ApprovalStore(data_dir), load_signing_key(data_dir), load_digest_key(data_dir))


def test_one_of_each_group_edge_cases(tmp_path: Path) -> None:
    svc = _local_service(tmp_path)
    sam = person("sam")
    both = Principal("xena", frozenset({"dba", "risk"}), "token")
    dba_only = Principal("dora", frozenset({"dba"}), "token")
    risk_only = Principal("rita", frozenset({"risk"}), "token")

    def opened(approvers: tuple[str, ...], required: int) -> str:
        return str(svc.open_grant(sam, "bankdb", "r", "why", 60, approvers, required, 600,
                                  one_of_each_group=True)["id"])  # fmt: skip

    # one person in both groups covers one of them only
    rid = opened(("group:dba", "group:risk"), 2)
    assert svc.decide(rid, both, "approve")[1] == "pending"
    assert svc.decide(rid, dba_only, "approve")[1] == "approved"  # xena takes risk, dora dba
    # fewer approvals required than entries: still one per entry
    rid = opened(("group:dba", "group:risk"), 1)
    assert svc.decide(rid, dba_only, "approve")[1] == "pending"
    assert svc.decide(rid, Principal("dan", frozenset({"dba"}), "token"), "approve")[1] == "pending"
    assert svc.decide(rid, risk_only, "approve")[1] == "approved"
    # the same entry twice needs two different people
    rid = opened(("group:dba", "group:dba"), 1)
    assert svc.decide(rid, both, "approve")[1] == "pending"
    with pytest.raises(ApprovalError, match="counts once"):
        svc.decide(rid, Principal("xena", frozenset({"dba"}), "apikey"), "approve")
    assert svc.decide(rid, dba_only, "approve")[1] == "approved"
    # user: and group: entries naming the same person: one of them only
    rid = opened(("group:dba", "user:dora"), 2)
    assert svc.decide(rid, dba_only, "approve")[1] == "pending"
    assert svc.decide(rid, both, "approve")[1] == "approved"
    # an entry nobody can cover (the requester) keeps it pending until it expires
    rid = opened(("group:dba", "user:sam"), 2)
    assert svc.decide(rid, dba_only, "approve")[1] == "pending"
    assert svc.decide(rid, both, "approve")[1] == "pending"
    with pytest.raises(ApprovalError, match="nobody decides their own request"):
        svc.decide(rid, sam, "approve")
    # any denial closes it, whatever was approved before
    assert svc.decide(rid, Principal("dan", frozenset({"dba"}), "token"), "deny", "no")[1] == "denied"


# ------------------------------------------------------------------------------------ the callback
def click(gw: Gateway, user: str, action: str, rid: str, *, ts: int | None = None,
          secret: bytes = KEY) -> tuple[int, Any]:  # fmt: skip
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "actions": [{"action_id": action, "value": rid, "type": "button"}],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    return signed(gw, body, "application/x-www-form-urlencoded", ts=ts, secret=secret)


def signed(gw: Gateway, body: bytes, content_type: str, *, scheme: str = "X-Slack", ts: int | None = None,
           secret: bytes = KEY, extra: dict[str, Any] | None = None) -> tuple[int, Any]:  # fmt: skip
    stamp = str(int(time.time()) if ts is None else ts)
    headers = {
        "Content-Type": content_type,
        f"{scheme}-Request-Timestamp": stamp,
        f"{scheme}-Signature": sign(secret, stamp, body),
        **(extra or {}),
    }
    return call(gw, "POST", "/api/approvals/callback", body, headers=headers)


def test_callback_forgeries_and_replays(gw: Gateway, svc: ApprovalService) -> None:
    rid = open_statement(svc, person("sam"))
    form = urllib.parse.urlencode(
        {"payload": json.dumps({"type": "block_actions", "user": {"id": "UBOB"},
                                "actions": [{"action_id": "approve", "value": rid}]})}
    ).encode()  # fmt: skip
    as_json = json.dumps({"action": "approve", "request_id": rid, "user": "UBOB"}).encode()
    now = int(time.time())
    refused: list[tuple[str, tuple[int, Any], int]] = [
        # a signed form body announced as JSON, and a signed JSON body announced as a form
        ("form as json", signed(gw, form, "application/json"), 400),
        ("json as form", signed(gw, as_json, "application/x-www-form-urlencoded"), 400),
        ("no content type", signed(gw, form, ""), 415),
        # timestamps: a second spelling is another signed message; non-ASCII digits; skew both ways
        ("plus sign", signed(gw, form, "application/x-www-form-urlencoded", extra={
            "X-Slack-Request-Timestamp": f"+{now}"}), 401),
        ("unicode digits", signed(gw, form, "application/x-www-form-urlencoded", extra={
            "X-Slack-Request-Timestamp": "".join(chr(0xFF10 + int(c)) for c in str(now)).encode()}), 401),
        ("stale", signed(gw, form, "application/x-www-form-urlencoded", ts=now - 61), 401),
        ("future", signed(gw, form, "application/x-www-form-urlencoded", ts=now + 61), 401),
        ("far future", signed(gw, form, "application/x-www-form-urlencoded", ts=10**13), 401),
        # a good X-Hoopgw signature does not rescue a bad X-Slack one (the first scheme found decides)
        ("bad slack, good hoopgw", signed(gw, form, "application/x-www-form-urlencoded", scheme="X-Hoopgw",
                                          extra={"X-Slack-Signature": "v0=" + "0" * 64,
                                                 "X-Slack-Request-Timestamp": str(now)}), 401),
        # an unlisted spelling of a listed user
        ("user with a space", click(gw, "UBOB ", "approve", rid), 403),
        ("lower-case user", click(gw, "ubob", "approve", rid), 403),
    ]  # fmt: skip
    request = svc.store.get(rid)
    assert request is not None
    # what the gateway signs and posts to webhooks, replayed as a callback in both content types
    for name, message in (
        ("json webhook", json_message("opened", request, None)),
        ("slack webhook", slack_message("opened", request, None, buttons=True)),
    ):
        body = orjson.dumps(message)
        for kind in ("application/json", "application/x-www-form-urlencoded"):
            refused.append((f"{name} as {kind}", signed(gw, body, kind, scheme="X-Hoopgw"), 400))
    for name, (code, answer), expected in refused:
        assert code == expected, (name, code, answer)
    assert status_of(svc, rid) == "pending"

    # lower-case header names are the same headers (HTTP): accepted, and a replay counts once
    stamp = str(int(time.time()))
    headers = {"content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": stamp,
               "x-slack-signature": sign(KEY, stamp, form)}  # fmt: skip
    two = open_statement(svc, person("sam"), required=2)
    form2 = form.replace(rid.encode(), two.encode())
    headers["x-slack-signature"] = sign(KEY, stamp, form2)
    answers = [call(gw, "POST", "/api/approvals/callback", form2, headers=headers) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 409, 409], answers
    stored = svc.store.get(two)
    assert stored is not None and stored.status == "pending" and len(stored.decisions) == 1


def test_closed_requests_stay_closed(gw: Gateway, svc: ApprovalService) -> None:
    sam = person("sam")
    denied = open_statement(svc, sam)
    assert decide(gw, denied, as_(gw, "bob"), "deny", "no")[0] == 200
    expired = open_statement(svc, sam, timeout_s=0.3)
    void = open_statement(svc, sam)
    svc.void(void, "the session ended")
    approved = open_statement(svc, sam)
    assert decide(gw, approved, as_(gw, "carol"))[1]["status"] == "approved"
    time.sleep(0.5)
    for rid, status in ((denied, "denied"), (expired, "expired"), (void, "void"), (approved, "approved")):
        for verdict, reason in (("approve", None), ("deny", "late")):
            code, answer = decide(gw, rid, as_(gw, "root"), verdict, reason)
            assert code == 409 and "already closed" in answer["error"], (rid, verdict, answer)
        code, answer = click(gw, "UROOT", "approve", rid)
        assert code == 409 and "already closed" in answer["error"], (rid, answer)
        assert status_of(svc, rid) == status
        stored = svc.store.get(rid)
        assert stored is not None and all(d.approver != "root" for d in stored.decisions)


def test_strangers_cannot_tell_a_hidden_request_from_a_missing_one(gw: Gateway, svc: ApprovalService) -> None:
    rid = open_statement(svc, person("sam"), statement="UPDATE accounts SET note = 'sam secret' WHERE id = 7")
    missing = "1m8b0000000000zz"
    zed = as_(gw, "zed")
    pat = as_(gw, "pat")  # an approver of nothing here, a requester of other things
    for bearer in (zed, pat):
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "/records", None),
            ("GET", "/wait?timeout=0", None),
            ("POST", "/approve", {}),
            ("POST", "/deny", {"reason": "x"}),
        ):
            hidden = call(gw, method, f"/api/approvals/{rid}{suffix}", body, bearer=bearer)
            absent = call(gw, method, f"/api/approvals/{missing}{suffix}", body, bearer=bearer)
            assert hidden[0] == absent[0] == 404, (suffix, hidden, absent)
            assert hidden[1]["error"].replace(rid, "ID") == absent[1]["error"].replace(missing, "ID")
        stream = call(gw, "GET", f"/api/approvals/{rid}/wait?timeout=1", bearer=bearer,
                      headers={"Accept": "text/event-stream"})  # fmt: skip
        assert stream[0] == 404
        for query in ("", "?status=pending", "?limit=1000", "?status=approved"):
            code, found = call(gw, "GET", f"/api/approvals{query}", bearer=bearer)
            assert code == 200 and rid not in {a["id"] for a in found}
            assert "sam secret" not in json.dumps(found)
    assert status_of(svc, rid) == "pending"
    # the ones who may see it do
    for who in ("sam", "bob", "root", "audrey"):
        assert call(gw, "GET", f"/api/approvals/{rid}", bearer=as_(gw, who))[0] == 200, who
    # an auditor sees, but does not decide
    code, answer = decide(gw, rid, as_(gw, "audrey"))
    assert code == 403 and "not an approver" in answer["error"]


def test_access_grants_within_their_policy(gw: Gateway, svc: ApprovalService) -> None:
    sam = as_(gw, "sam")
    ok = {"connection": "bankdb", "reason": "SUP-9"}
    for duration in ("61m", 3601, 3600.5, "2h", -1, 0, 1e308, "1d"):
        code, answer = call(gw, "POST", "/api/access-requests", {**ok, "for": duration}, bearer=sam)
        assert code == 400, (duration, answer)
    # a policy that does not name the caller, another person's policy, no policy at all
    assert call(gw, "POST", "/api/access-requests", {**ok, "for": "5m", "policy": "pair-jit"},
                bearer=sam)[0] == 403  # fmt: skip
    assert call(gw, "POST", "/api/access-requests", {**ok, "for": "5m", "policy": "dba"},
                bearer=sam)[0] == 403  # fmt: skip
    assert call(gw, "POST", "/api/access-requests", {**ok, "for": "5m"}, bearer=as_(gw, "zed"))[0] == 403
    # nothing in the body names the requester: it is always the caller
    code, answer = call(
        gw, "POST", "/api/access-requests", {**ok, "for": "5m", "requester": "bob"}, bearer=sam
    )
    assert code == 400 and "unknown field" in answer["error"]

    created = ask_access(gw, sam, **{"for": "1h"})
    assert created["duration_ms"] == 3_600_000
    assert decide(gw, created["id"], as_(gw, "bob"))[1]["status"] == "approved"
    grants = call(gw, "GET", "/api/access-grants", bearer=sam)[1]
    [grant] = [g for g in grants if g["id"] == created["id"]]
    assert grant["until"] - grant["granted_at"] == 3_600_000
    # the grant is sam's token's: not alice's (also in support), not a key called sam
    assert created["id"] not in {
        g["id"] for g in call(gw, "GET", "/api/access-grants", bearer=as_(gw, "alice"))[1]
    }
    sam_key = make_key(gw, "root", "sam", ["support"])
    assert call(gw, "GET", "/api/access-grants", bearer=sam_key)[1] == []


def test_a_new_key_with_a_revoked_keys_name_does_not_inherit_its_grant(
    gw: Gateway, svc: ApprovalService
) -> None:
    """Key names are reusable once revoked: the grant of the old ``agent-7`` must not pass to the new one."""
    old = make_key(gw, "root", "agent-7", ["support"])
    created = ask_access(gw, old, **{"for": "30m"})
    assert decide(gw, created["id"], as_(gw, "bob"))[1]["status"] == "approved"
    assert [g["id"] for g in call(gw, "GET", "/api/access-grants", bearer=old)[1]] == [created["id"]]
    assert call(gw, "DELETE", "/api/keys/agent-7", bearer=as_(gw, "root"))[0] == 200
    time.sleep(0.01)
    new = make_key(gw, "root", "agent-7", ["support"])
    assert call(gw, "GET", "/api/access-grants", bearer=new)[1] == []
    # nor at session start: the new key gets no session from the old key's grant
    res = gw.psql("SELECT 1;", user="agent-7", password=new)
    assert res.returncode != 0 and "access" in res.stderr, res.stdout + res.stderr


# ------------------------------------------------------------------------------ the CLI and verify
#: what a statement, a reason or a forged record may carry to fool a person reading a terminal: erase the
#: line, move the cursor up, hide text, a carriage return, a right-to-left override
TRICKS = ("\x1b[2K", "\x1b[1A", "\x1b[8m", "\r", "\u202e", "\x9b", "\x07")


def _clean(text: str) -> bool:
    return not any(t in text for t in TRICKS)


def test_the_cli_shows_untrusted_text_without_terminal_controls(gw: Gateway, svc: ApprovalService,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    """An agent's statement may hold anything in a comment or a literal; what an approver reads in a
    terminal must be what it is, not what escape sequences make it look like."""
    sneaky = (
        "DELETE FROM accounts /*\x1b[2K\r\x1b[1A\x1b[8m*/ WHERE true; -- \u202e\x9b\x07\nSELECT 1 -- harmless"
    )
    rid = open_statement(svc, person("sam"), statement=sneaky)
    bob = token(gw, "bob")
    for args in (("show", rid), ("list",), ("list", "--status", "pending")):
        res = gw.run_cli("approvals", *args, "--token", bob)
        assert res.returncode == 0, res.stderr
        assert rid in res.stdout and "DELETE FROM accounts" in res.stdout
        assert _clean(res.stdout) and _clean(res.stderr), (args, res.stdout)
    # --json is data: escaped by JSON itself, and kept exactly
    res = gw.run_cli("approvals", "show", rid, "--json", "--token", bob)
    assert json.loads(res.stdout)[0]["statement"] == sneaky
    # a reason with the same tricks, shown to the requester by show, deny and wait
    res = gw.run_cli("approvals", "deny", rid, "--reason", "no\x1b[2K\rapproved", "--token", bob)
    assert res.returncode == 0 and _clean(res.stdout), res.stdout
    for again in (("show", rid), ("wait", rid, "--timeout", "1s")):
        res = gw.run_cli("approvals", *again, "--token", token(gw, "sam"))
        assert res.returncode in (0, 1) and "denied" in res.stdout + res.stderr, res.stderr
        assert _clean(res.stdout) and _clean(res.stderr), (again, res.stdout, res.stderr)

    # a forged record file whose field names and values carry the tricks: the refusal is printed clean
    records = call(gw, "GET", f"/api/approvals/{rid}/records", bearer=bob)[1]
    forged = dict(records[0])
    forged["\x1b[2K\rOK: approval_request " + rid] = "\x1b[8m"
    path = tmp_path / "forged.json"
    path.write_bytes(orjson.dumps([forged, *records[1:]]))
    res = gw.run_cli("approvals", "verify", str(path))
    assert res.returncode == 1 and "unexpected field" in res.stderr
    assert _clean(res.stdout) and _clean(res.stderr), res.stderr


def test_verify_refuses_tampered_unbound_and_double_counted_records(tmp_path: Path) -> None:
    from hoopgw.cli._approvals import verify_all

    svc = _local_service(tmp_path)
    key = load_signing_key(tmp_path)
    public = key.public_key()
    a = svc.open_request(person("sam"), "bankdb", "SELECT 1", [], None, "writes", ["group:dba"], 2, 600)
    b = svc.open_request(person("sam"), "bankdb", "SELECT 2", [], None, "writes", ["group:dba"], 2, 600)
    on_a, _ = svc.decide(a["id"], person("bob"), "approve")
    on_b, _ = svc.decide(b["id"], person("bob"), "approve")

    def errors(*records: dict[str, Any]) -> list[str | None]:
        return [r.error.code if r.error else None for r in verify_all(public, [dict(r) for r in records])]

    assert errors(a, on_a) == [None, None]
    assert errors(b, on_a, a) == [None, None, None]  # bound to its own request, further on
    assert errors(b, on_a) == [None, "unbound"]  # its request is not there
    # the same decision twice does not make two approvals
    assert errors(a, on_a, on_a) == [None, None, "malformed"]
    # another request's signature, a changed field, alg none
    assert errors({**a, "signature": b["signature"]})[0] == "bad_signature"
    assert errors(a, {**on_a, "decision": "deny", "reason": "x"})[1] == "bad_signature"
    assert errors({**a, "signature": {**a["signature"], "alg": "none"}})[0] == "unsupported_alg"
    assert errors({**on_a, "request_id": b["id"]})[0] == "bad_signature"
    # signed by the gateway's key, but outside the request's life: at its expiry it was already expired
    body = {k: v for k, v in on_a.items() if k != "signature"}
    at_expiry = sign_record(key, {**body, "id": "d1", "decided_at": a["expires_at"]})
    before = sign_record(key, {**body, "id": "d2", "decided_at": a["created_at"] - 1})
    by_requester = sign_record(key, {**body, "id": "d3", "approver": {**body["approver"], "subject": "sam"}})
    assert errors(a, at_expiry, before, by_requester) == [None, "unbound", "unbound", "unbound"]
    assert on_b  # (bound to b, unused above)


class _LyingApi:
    """A loopback HTTP server that answers every GET with the same JSON (a gateway API that lies)."""

    def __init__(self, answer: Any) -> None:
        body = orjson.dumps(answer)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_verify_by_id_refuses_the_records_of_another_request(gw: Gateway, svc: ApprovalService,
                                                             tmp_path: Path) -> None:  # fmt: skip
    """``verify X`` fetching from an API (not data_dir) must not say OK to the records of request Y."""
    pending = open_statement(svc, person("sam"))
    other = open_statement(svc, person("sam"))
    assert decide(gw, other, as_(gw, "bob"))[1]["status"] == "approved"
    other_records = call(gw, "GET", f"/api/approvals/{other}/records", bearer=as_(gw, "bob"))[1]
    mine = call(gw, "GET", f"/api/approvals/{pending}/records", bearer=as_(gw, "bob"))[1]
    pem = tmp_path / "gateway.pem"
    pem.write_text(gw.run_cli("signing-key").stdout)

    def verify_against(answer: Any) -> Any:
        liar = _LyingApi(answer)
        try:
            config = tmp_path / "liar.toml"
            config.write_text(toml_dumps({"gateway": {"data_dir": str(tmp_path / "empty"),
                                                      "api_listen": f"127.0.0.1:{liar.port}"}}))  # fmt: skip
            return hoopgw("approvals", "verify", pending, "-c", str(config), "--public-key", str(pem),
                          "--token", "t", env={"HOOPGW_TOKEN": ""})  # fmt: skip
        finally:
            liar.close()

    for answer, why in (
        (other_records, "another request's records"),
        ([*mine, other_records[1]], "its request plus another request's decision"),
        ([*mine, *other_records], "its request plus another request and its decision"),
        (other_records[1:], "another request's decision alone"),
        ([], "nothing"),
    ):
        res = verify_against(answer)
        assert res.returncode == 1, (why, res.stdout, res.stderr)
        assert pending in res.stderr, (why, res.stderr)
    res = verify_against(mine)  # the honest answer verifies
    assert res.returncode == 0, res.stderr


# ------------------------------------------------------------------------------------------- DoS
def test_one_caller_cannot_flood_the_approvers_with_access_requests(
    gw: Gateway, svc: ApprovalService
) -> None:
    """Thousands of access requests from one caller would bury the approvers' channel and overflow the
    webhook queues (1000 each, then dropped), so that real requests go unannounced: at most 10 pending."""
    flo = LocalIssuer(gw.data_dir, "hoopgw").issue("flo", ["support"], 600)
    body = {"connection": "bankdb", "for": "5m", "reason": "flood"}
    answers = [call(gw, "POST", "/api/access-requests", body, bearer=flo) for _ in range(14)]
    codes = [code for code, _ in answers]
    assert codes == [201] * 10 + [429] * 4, answers
    assert "at most 10" in answers[-1][1]["error"]
    pending = [r for r in svc.store.list(status="pending", limit=1000) if r.requester == "flo"]
    assert len(pending) == 10
    # once one is decided there is room for one more; others are not held up by flo
    assert decide(gw, pending[0].id, as_(gw, "bob"), "deny", "flood")[0] == 200
    assert call(gw, "POST", "/api/access-requests", body, bearer=flo)[0] == 201
    assert call(gw, "POST", "/api/access-requests", body, bearer=flo)[0] == 429
    assert call(gw, "POST", "/api/access-requests", body, bearer=as_(gw, "sam"))[0] == 201


def test_oversized_and_lying_bodies(gw: Gateway) -> None:
    sam = as_(gw, "sam")
    big = b'{"connection": "bankdb", "for": "5m", "reason": "' + b"x" * (64 * 1024) + b'"}'
    assert call(gw, "POST", "/api/access-requests", big, bearer=sam)[0] == 413
    assert call(gw, "POST", "/api/approvals/x/approve", big, bearer=sam)[0] == 413
    # a Content-Length that lies (larger than sent is a hang for the client only; a huge one is refused)
    assert call(gw, "POST", "/api/access-requests", b"{}", bearer=sam,
                headers={"Content-Length": "99999999999999999999"})[0] in (400, 413)  # fmt: skip
    # a chunked body that never ends within the limit is cut at the limit
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=15)
    try:
        conn.putrequest("POST", "/api/access-requests")
        conn.putheader("Authorization", f"Bearer {sam}")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 8192
        try:
            for _ in range(8):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    # the callback has its own larger limit, checked before the signature
    huge = b"payload=" + b"x" * (200 * 1024)
    assert signed(gw, huge, "application/x-www-form-urlencoded")[0] == 413
    assert call(gw, "GET", "/healthz")[0] == 200


def test_silent_and_trickling_connections_are_cut(gw: Gateway) -> None:
    """No credential needed to hold a connection: a silent one, a head sent a byte at a time, a body
    that never completes. Each holds a file descriptor of the gateway, which also serves the database
    sessions; the API lets each go within its deadlines (10 s for the head, 10 s for the body)."""
    import socket

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", gw.api_port), timeout=30)
        sock.settimeout(30)
        return sock

    silent = [connect() for _ in range(20)]
    trickle = connect()
    body = connect()
    body.sendall(b"POST /api/approvals/callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
    started = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    sent = 0
    trickle_cut_at: float | None = None
    while time.monotonic() - started < 25 and trickle_cut_at is None:
        try:
            trickle.sendall(head[sent % len(head) : sent % len(head) + 1])
            sent += 1
        except OSError:
            trickle_cut_at = time.monotonic() - started
            break
        trickle.settimeout(1.0)
        try:
            if trickle.recv(1) == b"":
                trickle_cut_at = time.monotonic() - started
        except TimeoutError:
            pass
    assert trickle_cut_at is not None and trickle_cut_at < 15, trickle_cut_at
    for sock in silent:
        sock.settimeout(max(1.0, 15 - (time.monotonic() - started)))
        assert sock.recv(1) == b"", "a silent connection is still open"
        sock.close()
    answer = body.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    body.close()
    trickle.close()
    assert call(gw, "GET", "/healthz")[0] == 200


def test_one_caller_holds_a_bounded_number_of_waits(gw: Gateway, svc: ApprovalService) -> None:
    rid = open_statement(svc, person("sam"))
    bob = as_(gw, "bob")
    conns: list[http.client.HTTPConnection] = []
    try:
        for i in range(32):
            conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=30)
            accept = {"Accept": "text/event-stream"} if i % 2 else {}
            conn.request(
                "GET",
                f"/api/approvals/{rid}/wait?timeout=60",
                headers={"Authorization": f"Bearer {bob}", **accept},
            )
            conns.append(conn)
        time.sleep(1.0)  # let them all reach the gateway
        for accept in ({}, {"Accept": "text/event-stream"}):
            code, answer = call(
                gw, "GET", f"/api/approvals/{rid}/wait?timeout=60", bearer=bob, headers=accept
            )
            assert code == 429 and "at most 32" in answer["error"], answer
        # others are not affected, nor bob's quick reads
        assert call(gw, "GET", f"/api/approvals/{rid}/wait?timeout=0.1", bearer=as_(gw, "sam"))[0] == 200
        assert call(gw, "GET", f"/api/approvals/{rid}/wait?timeout=0", bearer=bob)[0] == 200
    finally:
        for conn in conns:
            conn.close()

    # closed streams and polls give their slots back
    def free() -> bool:
        return call(gw, "GET", f"/api/approvals/{rid}/wait?timeout=0.1", bearer=bob)[0] == 200

    wait_until(free, timeout=20, what="bob's waits to be given back")
    streams = []
    for _ in range(32):  # all 32 again: nothing leaked
        conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=30)
        conn.request("GET", f"/api/approvals/{rid}/wait?timeout=60",
                     headers={"Authorization": f"Bearer {bob}", "Accept": "text/event-stream"})  # fmt: skip
        streams.append(conn)
    try:
        for conn in streams:
            assert conn.getresponse().status == 200
    finally:
        for conn in streams:
            conn.close()


# ------------------------------------------------------------------------------------------ last
def test_no_secret_reaches_the_log_or_the_audit_trail(gw: Gateway) -> None:
    """Runs last in this module: after everything above, neither the gateway's log nor its audit trail
    holds a token, an API key, the callback secret or a signature."""
    # failures that quote what they were given, if anything would
    wrong_key = make_key(gw, "root", "leaky", ["support"])[:-6] + "AAAAAA"  # a bad checksum
    jwtish = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtYWxsb3J5In0.c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ"
    for bearer in (wrong_key, jwtish, "hoopgw_" + "x" * 50):
        assert call(gw, "GET", "/api/approvals", bearer=bearer)[0] == 401
    assert click(gw, "UBOB", "approve", "1m8b0000000000zz", secret=b"wrong-secret-of-enough-length")[0] == 401
    time.sleep(1.0)  # the audit writer flushes
    with AuditStore.open(gw.data_dir, create=False) as store:
        audit = json.dumps([e for e in store.events(limit=100_000)])
    log = gw.log_text()
    secrets = [
        SECRET,
        wrong_key,
        jwtish,
        "hoopgw_" + "x" * 50,
        *(t for (_, d), t in _TOKENS.items() if d == gw.data_dir),
    ]
    for text, where in ((log, "log"), (audit, "audit")):
        for secret in secrets:
            assert secret not in text, (where, secret[:12])
        assert not KEY_PATTERN.search(text), where  # no API key at all
        assert "v0=" not in text, where  # no signature
