"""Approval webhooks and the signed interactive callback.

In-process: the notifier posts real HTTP to a local receiver (payload shapes, signatures, retries, the
bounded queue, shutdown). End to end: a real gateway child process with webhooks pointing at the
receiver and ``POST /api/approvals/callback`` deciding requests opened from this process on the
gateway's own data_dir (same keys, same store).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import psycopg
import pytest

from hoopgw._pgcluster import free_port
from hoopgw.approvals import (
    ApprovalService,
    ApprovalStore,
    StoredRequest,
    load_digest_key,
    load_signing_key,
    verify_record,
)
from hoopgw.approvals._webhooks import (
    SIGNATURE_HEADER,
    SLACK_TEXT_MAX,
    TIMESTAMP_HEADER,
    Webhook,
    WebhookNotifier,
    callback_key,
    json_message,
    sign,
    signature_valid,
    slack_message,
)
from hoopgw.audit import AuditStore
from hoopgw.config import load_config
from hoopgw.errors import ConfigError, SecretError
from hoopgw.identity import Principal

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import wait_until

GatewayFactory = Any
SECRET = "s3cr3t-callback-signing-key-0123456789"
KEY = SECRET.encode()
#: signs the gateway's outgoing webhooks: never the callback secret
WEBHOOK_SECRET = "webhook-signing-secret-0123456789"
WEBHOOK_KEY = WEBHOOK_SECRET.encode()
SQL = "UPDATE accounts SET balance = $1 WHERE id = $2"
ALICE = Principal(subject="alice", groups=frozenset({"dev", "dba"}), auth="token")
#: writes by ai-agents are held for an approver of group dba
AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "approvers": ["group:dba"],
    "approval_timeout": "60s",
}
REQUEST_FIELDS = {
    "id", "type", "status", "connection", "requester", "rule", "statement", "params_masked",
    "more_params_masked", "reason",
    "duration_ms", "approvers", "approvals_required", "approvals", "created_at", "expires_at",
    "closed_at", "close_reason", "prompt_id",
}  # fmt: skip


# ------------------------------------------------------------------------------------- a local receiver
@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records every POST.

    ``/fail`` answers 500, ``/bad`` 400, ``/flaky`` 503 to its first request and 200 after, ``/slow``
    waits 2 s; anything else 200.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    flaky_seen = sum(1 for r in receiver.requests if r.path == "/flaky")
                status = {"/fail": 500, "/bad": 400}.get(self.path, 200)
                if self.path == "/flaky" and flaky_seen == 1:
                    status = 503
                if self.path == "/slow":
                    time.sleep(2)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a test of timeouts)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, path: str, pred: Callable[[Received], bool] = lambda _r: True) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path and pred(r)]

    def wait(self, path: str, pred: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        wait_until(lambda: bool(self.received(path, pred)), timeout, what=f"a POST to {path}")
        return self.received(path, pred)[0]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def about(request_id: str, event: str) -> Callable[[Received], bool]:
    """A received JSON webhook about ``request_id``'s ``event``."""
    return lambda r: r.json().get("event") == f"approval.{event}" and r.json()["request"]["id"] == request_id


def mentions(request_id: str) -> Callable[[Received], bool]:
    """A received Slack message about ``request_id``."""
    return lambda r: request_id in r.body.decode()


def service(data_dir: Path) -> ApprovalService:
    return ApprovalService(ApprovalStore(data_dir), load_signing_key(data_dir), load_digest_key(data_dir))


def open_request(svc: ApprovalService, *, approvers: tuple[str, ...] = ("group:dba",), required: int = 1,
                 statement: str = SQL) -> str:  # fmt: skip
    record = svc.open_request(
        ALICE, "bankdb", statement, ["***", "7"], "prompt-1", "writes", approvers, required, 600.0,
        params=["4111111111111111", "7"],
    )  # fmt: skip
    return str(record["id"])


# ------------------------------------------------------------------------------------- in process
Hook = tuple[str, Literal["json", "slack"]]


def notifier_for(receiver: Receiver, *hooks: Hook, secret: bytes | None = KEY, **kw: Any) -> WebhookNotifier:
    webhooks = [
        Webhook(receiver.url + path, fmt, 2.0, f"webhooks[{i}]") for i, (path, fmt) in enumerate(hooks)
    ]
    return WebhookNotifier(
        webhooks,
        base_url="https://gw.example/",
        secret=secret,
        buttons=secret is not None,
        backoff_s=0.05,
        **kw,
    )


def test_opened_and_closed_json_and_slack_with_signatures(tmp_path: Path, receiver: Receiver) -> None:
    svc = service(tmp_path)
    notifier = notifier_for(receiver, ("/n1/json", "json"), ("/n1/slack", "slack"))
    svc.add_listener(notifier.notify)

    async def main() -> str:
        await notifier.start()
        rid = await asyncio.to_thread(open_request, svc)  # the listener runs on a worker thread
        bob = Principal(subject="bob", groups=frozenset({"dba"}), auth="token")
        await asyncio.to_thread(svc.decide, rid, bob, "approve")
        await asyncio.to_thread(receiver.wait, "/n1/slack", lambda r: "Approved" in r.body.decode())
        await notifier.close(5.0)
        return rid

    rid = asyncio.run(main(), debug=True)
    opened = receiver.wait("/n1/json", about(rid, "opened")).json()
    assert set(opened) == {"event", "request", "url"}
    assert opened["url"] == f"https://gw.example/api/approvals/{rid}"
    request = opened["request"]
    assert set(request) == REQUEST_FIELDS
    assert request["status"] == "pending" and request["type"] == "approval_request"
    assert request["statement"] == SQL and request["params_masked"] == ["***", "7"]
    assert request["requester"] == {"subject": "alice", "auth": "token", "groups": ["dba", "dev"]}
    assert request["approvers"] == ["group:dba"] and request["approvals_required"] == 1
    assert request["prompt_id"] == "prompt-1" and request["closed_at"] is None
    assert "4111111111111111" not in receiver.received("/n1/json")[0].body.decode()
    closed = receiver.wait("/n1/json", about(rid, "closed")).json()
    assert (
        closed["request"]["status"] == "approved" and closed["request"]["close_reason"] == "approved by bob"
    )
    # opened went out before closed, on each webhook
    events = [
        r.json()["event"] for r in receiver.received("/n1/json", lambda r: r.json()["request"]["id"] == rid)
    ]
    assert events == ["approval.opened", "approval.closed"]
    for hit in receiver.received("/n1/json") + receiver.received("/n1/slack"):
        assert hit.headers["Content-Type"] == "application/json"
        ts = hit.headers[TIMESTAMP_HEADER]
        assert abs(int(ts) - time.time()) < 60
        assert signature_valid(KEY, ts, hit.body, hit.headers[SIGNATURE_HEADER])
        assert not signature_valid(
            b"another-secret-of-enough-length", ts, hit.body, hit.headers[SIGNATURE_HEADER]
        )
        assert not signature_valid(KEY, ts, hit.body + b" ", hit.headers[SIGNATURE_HEADER])

    slack_open = receiver.wait("/n1/slack", lambda r: "actions" in r.body.decode()).json()
    assert set(slack_open) == {"text", "blocks"} and "*alice*" in slack_open["text"]
    section, context, actions = slack_open["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    text = section["text"]["text"]
    assert "*alice*" in text and "*bankdb*" in text and "*writes*" in text
    assert f"```{SQL}\n-- $1 = ***, $2 = 7```" in text
    assert context["type"] == "context" and rid in context["elements"][0]["text"]
    assert "<!date^" in context["elements"][0]["text"]
    assert actions["type"] == "actions"
    assert [(b["action_id"], b["value"]) for b in actions["elements"]] == [("approve", rid), ("deny", rid)]
    slack_closed = receiver.wait("/n1/slack", lambda r: "Approved" in r.body.decode()).json()
    assert [b["type"] for b in slack_closed["blocks"]] == ["section", "context"]
    assert "approved by bob" in slack_closed["blocks"][0]["text"]["text"]
    assert [(s["queued"], s["sent"], s["failed"], s["dropped"]) for s in notifier.stats()] == [
        (0, 2, 0, 0)
    ] * 2


def test_no_secret_no_buttons_no_signature(tmp_path: Path, receiver: Receiver) -> None:
    svc = service(tmp_path)
    notifier = notifier_for(receiver, ("/n2/slack", "slack"), secret=None)
    svc.add_listener(notifier.notify)

    async def main() -> None:
        await notifier.start()
        open_request(svc)  # on the loop's own thread this time
        await asyncio.to_thread(receiver.wait, "/n2/slack", lambda _r: True)
        await notifier.close(5.0)

    asyncio.run(main(), debug=True)
    [hit] = receiver.received("/n2/slack")
    assert SIGNATURE_HEADER not in hit.headers and TIMESTAMP_HEADER not in hit.headers
    assert [b["type"] for b in hit.json()["blocks"]] == ["section", "context"]


def test_retries_transient_failures_only(tmp_path: Path, receiver: Receiver) -> None:
    svc = service(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    hooks = [
        Webhook(receiver.url + "/flaky", "json", 2.0, "flaky"),
        Webhook(receiver.url + "/fail", "json", 2.0, "fail"),
        Webhook(receiver.url + "/bad", "json", 2.0, "bad"),
        Webhook(dead + "/dead", "json", 2.0, "dead"),
        Webhook(receiver.url + "/after", "json", 2.0, "after"),
    ]
    notifier = WebhookNotifier(hooks, secret=KEY, backoff_s=0.05, retries=2)
    svc.add_listener(notifier.notify)

    async def main() -> None:
        await notifier.start()
        open_request(svc)
        await notifier.close(10.0)

    started = time.monotonic()
    asyncio.run(main(), debug=True)
    assert time.monotonic() - started < 8
    assert len(receiver.received("/flaky")) == 2  # 503, then 200
    assert len(receiver.received("/fail")) == 3  # 500 three times: given up
    assert len(receiver.received("/bad")) == 1  # a 4xx is not retried
    assert len(receiver.received("/after")) == 1
    stats = {s["name"]: (s["sent"], s["failed"]) for s in notifier.stats()}
    assert stats == {"flaky": (1, 0), "fail": (0, 1), "bad": (0, 1), "dead": (0, 1), "after": (1, 0)}
    # the retried request was re-signed: every attempt verifies
    for hit in receiver.received("/flaky"):
        assert signature_valid(KEY, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])


def test_queue_is_bounded_and_shutdown_is_bounded(tmp_path: Path, receiver: Receiver) -> None:
    svc = service(tmp_path)
    notifier = WebhookNotifier(
        [Webhook(receiver.url + "/slow", "json", 5.0, "slow")], secret=None, queue_max=3, retries=0
    )
    svc.add_listener(notifier.notify)

    async def main() -> float:
        await notifier.start()
        for _ in range(10):  # the loop does not run meanwhile: three are queued, seven dropped at once
            open_request(svc)
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await notifier.close(0.5)  # the slow one is cut off, the queued ones are counted as dropped
        return time.monotonic() - t0

    took = asyncio.run(main(), debug=True)
    assert took < 2
    [stats] = notifier.stats()
    assert stats["sent"] == 0 and stats["queued"] == 0
    assert stats["dropped"] == 10  # 7 on overflow + 3 left at shutdown (the one in flight included)
    assert len(receiver.received("/slow")) == 1
    notifier.notify("opened", _any_request(svc))  # after close: ignored, never raises
    assert notifier.stats()[0]["dropped"] == 10


def _any_request(svc: ApprovalService) -> StoredRequest:
    [request, *_] = svc.store.list(limit=1)
    return request


def test_slack_text_is_escaped_and_bounded(tmp_path: Path) -> None:
    svc = service(tmp_path)
    long_sql = "UPDATE t SET note = '<!channel> & ```' WHERE x = '" + "&" * 5000 + "'"
    rid = open_request(svc, statement=long_sql, approvers=("group:dba", "user:<!here>"))
    request = svc.store.get(rid)
    assert request is not None
    message = slack_message("opened", request, None, buttons=True)
    section = message["blocks"][0]["text"]["text"]
    assert len(section) <= SLACK_TEXT_MAX and len(message["text"]) <= SLACK_TEXT_MAX
    assert "<!channel>" not in section and "&lt;!channel&gt; &amp;" in section
    assert section.endswith("…```") and section.count("```") == 2  # the statement's ``` is defused
    assert not re.search(r"&[a-z]{0,3}\Z", section.removesuffix("…```"))  # never cut inside an entity
    context = message["blocks"][1]["elements"][0]["text"]
    assert "<!here>" not in context and "user:&lt;!here&gt;" in context

    # an access request: the reason (escaped) instead of a statement
    record = {k: v for k, v in request.record.items() if k not in ("statement", "params_masked", "prompt_id")}
    grant = replace(
        request, record={**record, "type": "access_grant", "reason": "INC-7 <@U1>", "duration_ms": 7_200_000}
    )
    message = slack_message("opened", grant, None, buttons=False)
    assert [b["type"] for b in message["blocks"]] == ["section", "context"]
    section = message["blocks"][0]["text"]["text"]
    assert (
        "requests access to *bankdb* (rule *writes*) for 2h" in section and "> INC-7 &lt;@U1&gt;" in section
    )
    view = json_message("closed", grant, "http://gw:8009")["request"]
    assert view["statement"] is None and view["reason"] == "INC-7 <@U1>" and view["duration_ms"] == 7_200_000


def test_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hoopgw.toml"
    path.write_text(
        '[approvals]\ncallback_secret = "env:CB_SECRET"\n'
        '[[approvals.webhooks]]\nurl = "env:SLACK_URL"\nformat = "slack"\n'
        '[[approvals.webhooks]]\nurl = "https://hooks.example/x"\ntimeout = "2s"\n'
        '[[approvals.callback_users]]\nuser = "U1"\nsubject = "bob"\ngroups = ["dba"]\n'
    )
    config = load_config(path).approvals
    assert config.webhooks[1].timeout == 2.0 and config.webhooks[1].resolve_url() == "https://hooks.example/x"
    assert config.callback_users[0].groups == ("dba",)
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.com/services/T/B/secret")
    assert config.webhooks[0].resolve_url() == "https://hooks.slack.com/services/T/B/secret"
    monkeypatch.setenv("SLACK_URL", "not a url: secret")
    with pytest.raises(SecretError) as info:
        config.webhooks[0].resolve_url()
    assert "secret" not in str(info.value).replace("SecretError", "")
    monkeypatch.setenv("CB_SECRET", "short")
    with pytest.raises(SecretError, match="at least 16 bytes"):
        callback_key(config)
    monkeypatch.setenv("CB_SECRET", SECRET)
    assert callback_key(config) == KEY

    path.write_text(
        '[approvals]\n[[approvals.callback_users]]\nuser = "U1"\nsubject = "bob"\n'
        '[[approvals.webhooks]]\nurl = "https://user:pw@hooks.example/"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = {key: reason for _f, key, reason in err.value.problems}
    assert "approvals.webhooks[0].url" in problems
    path.write_text('[approvals]\ncallback_secret = "env:X"\n[[approvals.callback_users]]\nuser = "U1"\n'
                    'subject = "a"\n[[approvals.callback_users]]\nuser = "U1"\nsubject = "b"\n')  # fmt: skip
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(path)
    path.write_text('[approvals]\n[[approvals.callback_users]]\nuser = "U1"\nsubject = "bob"\n')
    with pytest.raises(ConfigError, match="callback_users needs callback_secret"):
        load_config(path)


def test_sign_is_slacks_scheme() -> None:
    # Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack)
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    secret = b"8f742231b10e8888abcd99yyyzzz85a5"
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(secret, "1531420618", body) == expected
    assert signature_valid(secret, "1531420618", body, expected)
    assert not signature_valid(secret, "1531420619", body, expected)
    assert not signature_valid(secret, "1531420618", body, expected.upper())
    assert not signature_valid(secret, "\uff11\uff15", body, "v0=\u00fcn\u00efcode")


# ------------------------------------------------------------------------------------- end to end
@dataclass
class Site:
    gw: Gateway
    svc: ApprovalService
    receiver: Receiver
    http: httpx.Client

    def callback(self, body: bytes, content_type: str, *, scheme: str = "slack", ts: int | None = None,
                 secret: bytes = KEY, headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        stamp = str(int(time.time()) if ts is None else ts)
        prefix = "X-Slack" if scheme == "slack" else "X-Hoopgw"
        sig = {f"{prefix}-Request-Timestamp": stamp, f"{prefix}-Signature": sign(secret, stamp, body)}
        return self.http.post(
            f"{self.gw.api_url}/api/approvals/callback",
            content=body,
            headers={"Content-Type": content_type, **sig, **(headers or {})},
        )

    def click(self, user: str, action: str, request_id: str, **kw: Any) -> httpx.Response:
        """What Slack posts when ``user`` clicks a button of our message."""
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower()[1:], "name": user.lower()[1:], "team_id": "T1"},
            "api_app_id": "A1",
            "team": {"id": "T1", "domain": "bank"},
            "channel": {"id": "C1", "name": "approvals"},
            "response_url": "https://hooks.slack.com/actions/T1/1/x",
            "trigger_id": "1.2.3",
            "actions": [
                {"type": "button", "action_id": action, "block_id": "hoopgw_approval", "value": request_id,
                 "text": {"type": "plain_text", "text": action.title()}, "action_ts": "1548426417.840180"}
            ],
        }  # fmt: skip
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return self.callback(body, "application/x-www-form-urlencoded", **kw)

    def decide_json(self, user: str, action: str, request_id: str, reason: str | None = None, **kw: Any
                    ) -> httpx.Response:  # fmt: skip
        body = {"action": action, "request_id": request_id, "user": user}
        if reason is not None:
            body["reason"] = reason
        return self.callback(json.dumps(body).encode(), "application/json", scheme="hoopgw", **kw)

    def status(self, request_id: str) -> str:
        request = self.svc.store.get(request_id)
        assert request is not None
        return request.status

    def events(self, kind: str) -> list[dict[str, Any]]:
        with AuditStore.open(self.gw.data_dir, create=False) as store:
            return [e["data"] for e in store.events(limit=10_000) if e["kind"] == kind]


@pytest.fixture(scope="module")
def site(module_gateway_factory: GatewayFactory, receiver: Receiver) -> Iterator[Site]:
    dead = f"http://127.0.0.1:{free_port()}/dead"
    gw = module_gateway_factory(
        extra={
            "policy": [
                AGENTS,
                {"name": "dba", "subjects": ["group:dba"], "connections": ["*"], "allow": ["*"]},
            ],
            "approvals": {
                "callback_secret": "env:TEST_CALLBACK_SECRET",
                "webhook_secret": "env:TEST_WEBHOOK_SECRET",
                "callback_max_age": "60s",
                "webhooks": [
                    {"url": dead, "timeout": 1},  # first, and never answers: the others still go out
                    {"url": receiver.url + "/gw/json"},
                    {"url": "env:TEST_SLACK_WEBHOOK", "format": "slack"},
                ],
                "callback_users": [
                    {"user": "UBOB", "subject": "bob", "groups": ["dba"]},
                    {"user": "UCAROL", "subject": "carol", "groups": ["dba"]},
                    {"user": "UALICE", "subject": "alice", "groups": ["dev", "dba"]},
                    {"user": "UEVE", "subject": "eve", "groups": ["dev"]},
                ],
            },
        },
        env={
            "TEST_CALLBACK_SECRET": SECRET,
            "TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TEST_SLACK_WEBHOOK": receiver.url + "/gw/slack",
        },
    )
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield Site(gw, service(gw.data_dir), receiver, client)
    assert SECRET not in gw.log_text() and "TEST_SLACK_WEBHOOK" not in gw.log_text()
    assert "/gw/slack" not in gw.log_text()


def test_slack_button_approves_and_closed_webhooks_go_out(site: Site) -> None:
    rid = open_request(site.svc)
    response = site.click("UBOB", "approve", rid)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["ok"] is True and out["status"] == "approved" and "bob approved" in out["text"]
    assert site.status(rid) == "approved"
    request = site.svc.store.get(rid)
    assert request is not None
    [decision] = request.decisions
    verify_record(load_signing_key(site.gw.data_dir).public_key(), decision.record)
    assert decision.record == out["decision"]
    assert decision.record["approver"] == {"subject": "bob", "auth": "token", "groups": ["dba"]}
    assert decision.record["reason"] == "approved from Slack by bob (UBOB)"

    closed = site.receiver.wait("/gw/json", about(rid, "closed")).json()
    assert set(closed["request"]) == REQUEST_FIELDS
    assert (
        closed["request"]["status"] == "approved" and closed["request"]["close_reason"] == "approved by bob"
    )
    assert closed["url"] == f"{site.gw.api_url}/api/approvals/{rid}"
    assert not site.receiver.received(
        "/gw/json", about(rid, "opened")
    )  # opened by this process, not the gateway
    hit = site.receiver.wait("/gw/json", about(rid, "closed"))
    # signed with the webhook secret; the callback secret is not what a receiver learns
    assert signature_valid(
        WEBHOOK_KEY, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER]
    )
    assert not signature_valid(KEY, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])
    slack = site.receiver.wait("/gw/slack", mentions(rid))
    assert signature_valid(
        WEBHOOK_KEY, slack.headers[TIMESTAMP_HEADER], slack.body, slack.headers[SIGNATURE_HEADER]
    )
    blocks = slack.json()["blocks"]
    assert [b["type"] for b in blocks] == ["section", "context"]
    assert "Approved" in blocks[0]["text"]["text"] and "approved by bob" in blocks[0]["text"]["text"]
    assert f"<{site.gw.api_url}/api/approvals/{rid}|details>" in blocks[1]["elements"][0]["text"]

    wait_until(lambda: any(e["request_id"] == rid for e in site.events("approval_callback")), 5)
    [event] = [e for e in site.events("approval_callback") if e["request_id"] == rid]
    assert event == {
        "request_id": rid, "platform": "Slack", "platform_user": "UBOB", "subject": "bob",
        "decision": "approve", "outcome": "approved", "decision_id": decision.id,
    }  # fmt: skip
    # the dead webhook (first in the list) did not hold anything up, and its failure is logged without a URL
    wait_until(lambda: "approval webhook failed" in site.gw.log_text(), 10, what="the dead webhook's failure")
    assert "webhooks[0] (127.0.0.1)" in site.gw.log_text()


def test_json_body_denies_with_reason(site: Site) -> None:
    rid = open_request(site.svc)
    response = site.decide_json("UBOB", "deny", rid)
    assert response.status_code == 400 and "reason" in response.json()["error"]
    assert site.status(rid) == "pending"
    response = site.decide_json("UBOB", "deny", rid, "not during the freeze")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "denied"
    closed = site.receiver.wait("/gw/json", about(rid, "closed")).json()
    assert closed["request"]["status"] == "denied"
    assert closed["request"]["close_reason"] == "denied by bob: not during the freeze"
    slack = site.receiver.wait("/gw/slack", mentions(rid)).json()
    assert "Denied" in slack["blocks"][0]["text"]["text"]


def test_slack_deny_button_gets_a_reason(site: Site) -> None:
    rid = open_request(site.svc)
    response = site.click("UCAROL", "deny", rid)
    assert response.status_code == 200, response.text
    request = site.svc.store.get(rid)
    assert request is not None and request.status == "denied"
    assert request.close_reason == "denied by carol: denied from Slack by carol (UCAROL)"


def test_signatures_are_checked(site: Site) -> None:
    rid = open_request(site.svc)
    other = b"another-secret-of-enough-length"
    assert site.click("UBOB", "approve", rid, secret=other).status_code == 401
    assert site.click("UBOB", "approve", rid, ts=int(time.time()) - 120).status_code == 401  # stale: replay
    assert site.click("UBOB", "approve", rid, ts=int(time.time()) + 120).status_code == 401  # from the future
    assert site.decide_json("UBOB", "approve", rid, secret=other).status_code == 401
    unsigned = site.http.post(
        f"{site.gw.api_url}/api/approvals/callback",
        json={"action": "approve", "request_id": rid, "user": "UBOB"},
    )
    assert unsigned.status_code == 401 and "X-Hoopgw-Signature" in unsigned.json()["error"]
    # a valid signature over another body does not carry over
    body = json.dumps({"action": "approve", "request_id": rid, "user": "UBOB"}).encode()
    stamp = str(int(time.time()))
    forged = site.http.post(
        f"{site.gw.api_url}/api/approvals/callback",
        content=body.replace(b"UBOB", b"UEVE"),
        headers={"Content-Type": "application/json", "X-Hoopgw-Request-Timestamp": stamp,
                 "X-Hoopgw-Signature": sign(KEY, stamp, body)},
    )  # fmt: skip
    assert forged.status_code == 401 and forged.json() == {"error": "bad signature"}
    assert site.status(rid) == "pending"
    wait_until(lambda: any(e.get("path") == "/api/approvals/callback" for e in site.events("auth_failed")), 5)
    # and the same request, signed right, goes through
    assert site.click("UBOB", "approve", rid).json()["status"] == "approved"


def test_who_may_decide(site: Site) -> None:
    rid = open_request(site.svc)
    unmapped = site.click("UNOBODY", "approve", rid)
    assert unmapped.status_code == 403
    assert (
        "Slack user nobody (UNOBODY) is not listed in [[approvals.callback_users]]"
        in unmapped.json()["error"]
    )
    own = site.click("UALICE", "approve", rid)  # alice is in group dba, but it is her request
    assert own.status_code == 403 and "nobody decides their own request" in own.json()["error"]
    stranger = site.decide_json("UEVE", "approve", rid)
    assert stranger.status_code == 403 and "eve is not an approver" in stranger.json()["error"]
    assert site.status(rid) == "pending"
    wait_until(lambda: len([e for e in site.events("approval_callback") if e["request_id"] == rid]) == 3, 5)
    refused = [e for e in site.events("approval_callback") if e["request_id"] == rid]
    assert {(e["platform_user"], e["subject"], e["outcome"]) for e in refused} == {
        ("UNOBODY", None, "refused"), ("UALICE", "alice", "refused"), ("UEVE", "eve", "refused"),
    }  # fmt: skip


def test_two_approvals_closed_and_unknown(site: Site) -> None:
    rid = open_request(site.svc, required=2)
    first = site.click("UBOB", "approve", rid)
    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert "still needs more approvals" in first.json()["text"]
    again = site.click("UBOB", "approve", rid)
    assert again.status_code == 409 and "counts once" in again.json()["error"]
    assert site.click("UCAROL", "approve", rid).json()["status"] == "approved"
    late = site.click("UCAROL", "deny", rid)
    assert late.status_code == 409 and "already closed" in late.json()["error"]
    assert site.click("UBOB", "approve", "no-such-request").status_code == 404
    assert site.decide_json("UBOB", "approve", "x" * 500).status_code == 404
    closed = site.receiver.wait("/gw/json", about(rid, "closed"))
    assert closed.json()["request"]["approvals"] == 2


def test_malformed_bodies(site: Site) -> None:
    rid = open_request(site.svc)
    assert site.callback(b"payload=%7B", "application/x-www-form-urlencoded").status_code == 400
    assert site.callback(b"a=1&payload=%7B%7D", "application/x-www-form-urlencoded").status_code == 400
    assert site.callback(b"{}", "text/plain").status_code == 415
    extra = json.dumps({"action": "approve", "request_id": rid, "user": "UBOB", "as": "root"}).encode()
    assert site.callback(extra, "application/json", scheme="hoopgw").status_code == 400
    assert site.decide_json("UBOB", "escalate", rid).status_code == 400
    # what the gateway itself posts to webhooks is signed with the same secret: it is never a decision
    request = site.svc.store.get(rid)
    assert request is not None
    replay = site.callback(
        orjson.dumps(json_message("opened", request, None)), "application/json", scheme="hoopgw"
    )
    assert replay.status_code == 400
    big = b"payload=" + b"x" * (200 * 1024)
    assert site.callback(big, "application/x-www-form-urlencoded").status_code == 413
    assert site.status(rid) == "pending"


def test_callback_off_without_secret(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.post(
            f"{gw.api_url}/api/approvals/callback",
            json={"action": "approve", "request_id": "x", "user": "U1"},
            headers={"X-Hoopgw-Request-Timestamp": str(int(time.time())), "X-Hoopgw-Signature": "v0=00"},
        )
    assert response.status_code == 404 and "callback_secret" in response.json()["error"]


def test_held_statement_is_announced_and_approved_from_slack(site: Site, pg: TestPg) -> None:
    table = f"acct_{int(time.time() * 1000) % 10**9}"
    pg.psql(f"CREATE TABLE {table} (id int PRIMARY KEY, balance int); INSERT INTO {table} VALUES (1, 100)",
            user="app")  # fmt: skip
    try:
        conninfo = site.gw.conninfo(user="slackbot", groups=("ai-agents",))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            pool = concurrent.futures.ThreadPoolExecutor(1)
            sql = f"UPDATE {table} SET balance = 7 WHERE id = 1 RETURNING balance"
            result = pool.submit(lambda: conn.execute(sql).fetchall())
            pool.shutdown(wait=False)
            # the gateway opened the request: both webhooks announce it
            opened = site.receiver.wait(
                "/gw/json",
                lambda r: (
                    r.json()["event"] == "approval.opened"
                    and r.json()["request"]["requester"]["subject"] == "slackbot"
                ),
            ).json()
            rid = opened["request"]["id"]
            assert opened["request"]["statement"] == sql and opened["request"]["rule"] == "agents"
            assert opened["url"] == f"{site.gw.api_url}/api/approvals/{rid}"
            message = site.receiver.wait(
                "/gw/slack", lambda r: rid in r.body.decode() and b"actions" in r.body
            )
            actions = message.json()["blocks"][-1]
            approve = next(b for b in actions["elements"] if b["action_id"] == "approve")
            assert not result.done(), "the statement waits for the decision"
            # an approver clicks the button of that very message
            response = site.click("UBOB", approve["action_id"], approve["value"])
            assert response.status_code == 200, response.text
            assert result.result(timeout=15) == [(7,)]
        closed = site.receiver.wait("/gw/json", about(rid, "closed")).json()
        assert closed["request"]["status"] == "approved"
        assert pg.psql(f"SELECT balance FROM {table}", user="app") == "7"
    finally:
        pg.psql(f"DROP TABLE {table}", user="app")
