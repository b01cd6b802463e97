"""Prompt provenance through the REAL gateway (docs/PROMPTS.md): ``POST /api/prompts``, prompt tags on
psycopg sessions (application_name and a leading comment), a held write, ``hoopgw prompts show`` and
``hoopgw sessions show``.

Every check reads what the gateway recorded (its SQLite store, its CLI, its API), never its internals.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from hoopgw.approvals import ApprovalStore
from hoopgw.demo import toml_dumps

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import run

AGENTS = {
    "name": "agents",
    "subjects": ["group:ai-agents"],
    "connections": ["bankdb"],
    "allow": ["read"],
    "approve": ["write"],
    "approvers": ["group:dba"],
    "approval_timeout": "60s",
}
EVERYONE = {"name": "dev", "subjects": ["group:dev", "group:dba"], "connections": ["*"], "allow": ["*"]}
MASKING = {"connections": ["bankdb"], "detectors": ["credit_card", "email"], "style": "last4"}
CARD = "4111111111111111"
ID_RE = re.compile(r"prm_[0-9a-z]{16}\Z")


@pytest.fixture(scope="module")
def gw(module_gateway_factory: Any) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        extra={"policy": [AGENTS, EVERYONE], "masking": [MASKING]},
        gateway={"admins": ["group:platform"], "auditors": ["group:audit"]},
    )
    return gateway


@pytest.fixture
def table(gw: Gateway, pg: TestPg) -> Iterator[str]:
    name = f"acct_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {name} (id int PRIMARY KEY, balance int);"
        f"INSERT INTO {name} SELECT g, 100 FROM generate_series(1, 3) g;",
        user="app",
    )
    yield name
    pg.psql(f"DROP TABLE {name}", user="app")


def api(gw: Gateway, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(
        method,
        gw.api_url + path,
        headers={**headers, **kw.pop("headers", {})},
        timeout=15,
        trust_env=False,
        **kw,
    )


def register(gw: Gateway, token: str, **body: Any) -> str:
    body = {"prompt": "list the accounts", "assistant": "claude-code", "model": "m-1", **body}
    response = api(gw, "POST", "/api/prompts", token, json=body)
    assert response.status_code == 201, response.text
    (prompt_id,) = response.json().values()
    assert ID_RE.match(prompt_id), prompt_id
    return str(prompt_id)


def connect(
    gw: Gateway, user: str, groups: tuple[str, ...], app: str | None = None
) -> psycopg.Connection[Any]:
    extra = {"application_name": app} if app is not None else {}
    return psycopg.connect(gw.conninfo(user=user, groups=groups, **extra), autocommit=True)


def show(gw: Gateway, prompt_id: str, *more: str) -> subprocess.CompletedProcess[str]:
    return gw.run_cli("prompts", "show", prompt_id, *more)


def report(gw: Gateway, prompt_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """``hoopgw prompts show ID --json`` once ``ready`` holds for it (the audit writer batches)."""
    deadline = time.monotonic() + 15
    while True:
        result = show(gw, prompt_id, "--json")
        assert result.returncode == 0, result.stderr
        (found,) = json.loads(result.stdout)
        if ready(found) or time.monotonic() > deadline:
            return dict(found)
        time.sleep(0.2)


def statements(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in found["caused"] if c["kind"] == "statement"]


def sqls(found: dict[str, Any]) -> list[str]:
    return [c["data"]["sql"] for c in statements(found)]


def in_thread(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


def pending_request(gw: Gateway, requester: str, timeout: float = 15.0) -> str:
    store = ApprovalStore(gw.data_dir)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in store.list(status="pending") if r.requester == requester]
            if found:
                return found[0].id
            assert time.monotonic() < deadline, f"no pending request of {requester}"
            time.sleep(0.05)
    finally:
        store.close()


# -- registering --------------------------------------------------------------------------------------
def test_a_prompt_is_stored_masked_and_shown_to_its_registrant(gw: Gateway) -> None:
    bot = gw.token("bot1", ("ai-agents",))
    text = f"Refund the card {CARD} of jane.doe@example.com\nthen tell her"
    code = f"UPDATE cards SET refunded = true WHERE number = '{CARD}'"
    prompt_id = register(gw, bot, prompt=text, generated_code=code, human="carol")
    with sqlite3.connect(gw.data_dir / "audit.db") as db:
        row = db.execute(
            "SELECT subject, auth, assistant, model, human, prompt, generated_code FROM prompts WHERE id = ?",
            (prompt_id,),
        ).fetchone()
        dump = "\n".join(str(r) for r in db.execute("SELECT * FROM prompts").fetchall())
    assert row[:5] == ("bot1", "token", "claude-code", "m-1", "carol")
    assert row[5] == "Refund the card ************1111 of ****.***@******e.com\nthen tell her"
    assert row[6] == "UPDATE cards SET refunded = true WHERE number = '************1111'"
    assert CARD not in dump and "jane.doe" not in dump

    mine = api(gw, "GET", f"/api/prompts/{prompt_id}", bot)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["id"] == prompt_id and body["registered"] is True and body["registered_by"] == "user:bot1"
    assert body["prompt"] == row[5] and body["generated_code"] == row[6] and body["caused"] == []
    auditor = api(gw, "GET", f"/api/prompts/{prompt_id}", gw.token("audrey", ("audit",)))
    assert auditor.status_code == 200 and auditor.json()["prompt"] == row[5]
    # anyone else: the same 404 as for no prompt at all
    other = api(gw, "GET", f"/api/prompts/{prompt_id}", gw.token("mallory", ("ai-agents",)))
    assert other.status_code == 404
    assert api(gw, "GET", "/api/prompts/prm_0000000000000000", bot).status_code == 404
    # the registration is on the audit trail, tagged with the prompt's id
    with sqlite3.connect(gw.data_dir / "audit.db") as db:
        deadline = time.monotonic() + 10
        while not (
            rows := db.execute(
                "SELECT prompt_id, data FROM events WHERE kind = 'prompt_registered' AND prompt_id = ?",
                (prompt_id,),
            ).fetchall()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert json.loads(rows[0][1])["subject"] == "bot1" and CARD not in rows[0][1]


def test_bad_requests_are_refused(gw: Gateway) -> None:
    token = gw.token("bot1", ("ai-agents",))
    good = {"prompt": "p", "assistant": "a", "model": "m"}
    missing = api(gw, "POST", "/api/prompts", None, json=good)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert api(gw, "POST", "/api/prompts", "not-a-token", json=good).status_code == 401
    assert api(gw, "GET", "/api/prompts/prm_x", None).status_code == 401
    assert api(gw, "GET", "/api/prompts/prm_x", "nope").status_code == 401
    huge = api(gw, "POST", "/api/prompts", token, json={**good, "prompt": "x" * (300 * 1024)})
    assert huge.status_code == 413
    # chunked, without a Content-Length: still cut off at the limit
    chunks = iter([json.dumps({**good, "prompt": "y" * (300 * 1024)}).encode()])
    streamed = api(
        gw, "POST", "/api/prompts", token, content=chunks, headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    for body, why in [
        ({**good, "extra": 1}, "unknown field"),
        ({"assistant": "a", "model": "m"}, "prompt is required"),
        ({**good, "prompt": "  "}, "prompt is required"),
        ({**good, "model": None}, "model is required"),
        ({**good, "assistant": "a\nb"}, "one line"),
        ({**good, "human": "h" * 201}, "at most 200"),
        ({**good, "generated_code": 7}, "generated_code must be"),
        ([good], "JSON object"),
    ]:
        refused = api(gw, "POST", "/api/prompts", token, json=body)
        assert refused.status_code == 400 and why in refused.json()["error"], (body, refused.text)
    assert (
        api(
            gw, "POST", "/api/prompts", token, content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    # nothing of the refused bodies was stored
    with sqlite3.connect(gw.data_dir / "audit.db") as db:
        assert db.execute(
            "SELECT count(*) FROM prompts WHERE prompt LIKE 'yyyy%' OR prompt = '  '"
        ).fetchone() == (0,)


# -- tags ---------------------------------------------------------------------------------------------
def test_prompt_show_lists_statements_and_the_approval_it_caused(gw: Gateway, pg: TestPg, table: str) -> None:
    bot = gw.token("bot2", ("ai-agents",))
    prompt_id = register(gw, bot, prompt=f"move money from card {CARD}")
    marker = f"marker-{uuid.uuid4().hex}"
    # the session's application_name tags every statement of it; a statement's own comment wins
    with connect(gw, "bot2", ("ai-agents",), app=f"agent-x hoop:prompt={prompt_id}") as tagged:
        assert tagged.execute(f"SELECT balance FROM {table} WHERE id = 1").fetchone() == (100,)
        assert tagged.execute("/* hoop:prompt=prm_someotherprompt */ SELECT 2").fetchone() == (2,)
        assert tagged.execute(f"SELECT '{marker}'").fetchone() == (marker,)
    # a session without a tag: only the statements carrying one in a leading comment
    with connect(gw, "bot2", ("ai-agents",)) as plain:
        assert plain.execute(f"/* hoop:prompt={prompt_id} */ SELECT count(*) FROM {table}").fetchone() == (3,)
        assert plain.execute("SELECT 'untagged'").fetchone() == ("untagged",)
        write = f"/* hoop:prompt={prompt_id} */ UPDATE {table} SET balance = 5 WHERE id = 2"
        held = in_thread(lambda: plain.execute(write))
        rid = pending_request(gw, "bot2")
        decided = api(gw, "POST", f"/api/approvals/{rid}/approve", gw.token("dora", ("dba",)), json={})
        assert decided.status_code == 200, decided.text
        held.result(timeout=15)
    assert pg.psql(f"SELECT balance FROM {table} WHERE id = 2", user="app") == "5"

    found = report(gw, prompt_id, lambda r: len(statements(r)) >= 4)
    assert found["registered"] is True and found["prompt"] == "move money from card ************1111"
    assert sqls(found) == [
        f"SELECT balance FROM {table} WHERE id = 1",
        f"SELECT '{marker}'",
        f"/* hoop:prompt={prompt_id} */ SELECT count(*) FROM {table}",
        write,
    ]
    assert all(c["prompt_known"] is True and c["subject"] == "bot2" for c in found["caused"])
    # result summaries ride on the statements
    first, _, counted, updated = statements(found)
    assert (first["data"]["rows"], first["data"]["status"]) == (1, "ok")
    assert (counted["data"]["tags"], updated["data"]["tags"]) == (["SELECT 1"], ["UPDATE 1"])
    # the approval request, with its decision, comes before the statement it released
    kinds = [c["kind"] for c in found["caused"]]
    (approval,) = [c for c in found["caused"] if c["kind"] == "approval_request"]
    assert approval["request"]["id"] == rid and approval["request"]["status"] == "approved"
    assert [d["approver"] for d in approval["request"]["decisions"]] == ["dora"]
    assert kinds.index("approval_request") < len(kinds) - 1 and found["caused"][-1]["data"]["sql"] == write
    # the session tagged through application_name is listed with its opening and closing
    assert kinds[0] == "session_open" and "session_close" in kinds
    assert [c["ts"] for c in found["caused"]] == sorted(c["ts"] for c in found["caused"])

    text = show(gw, prompt_id)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert f"prompt      {prompt_id}" in out
    assert "by user:bot2" in out and "move money from card ************1111" in out and CARD not in out
    assert f"approval request {rid}  approved" in out and "dora approves" in out
    assert f"SELECT '{marker}'" in out and "untagged" not in out and "SELECT 2" not in out
    assert out.index(f"approval request {rid}") < out.index(f"UPDATE {table}")

    # sessions show: the prompt behind each statement
    with sqlite3.connect(gw.data_dir / "audit.db") as db:
        (sid,) = db.execute(
            "SELECT session_id FROM events WHERE kind = 'statement' AND data LIKE ?", (f"%{marker}%",)
        ).fetchone()
    shown = gw.run_cli("sessions", "show", sid, "--json")
    assert shown.returncode == 0, shown.stderr
    (session,) = json.loads(shown.stdout)
    assert session["params"]["prompt_id"] == prompt_id and session["prompt_known"] is True
    tags = [
        (e["data"]["sql"], e["prompt_id"], e.get("prompt_known"))
        for e in session["events"]
        if e["kind"] == "statement"
    ]
    assert tags == [
        (f"SELECT balance FROM {table} WHERE id = 1", prompt_id, True),
        ("/* hoop:prompt=prm_someotherprompt */ SELECT 2", "prm_someotherprompt", False),
        (f"SELECT '{marker}'", prompt_id, True),
    ]
    lines = gw.run_cli("sessions", "show", sid).stdout
    assert f"prompt: {prompt_id}: known" in lines and "prompt: prm_someotherprompt: UNKNOWN" in lines


def test_unknown_and_foreign_tags_are_recorded_as_such(gw: Gateway) -> None:
    bob = gw.token("bob", ("dev",))
    bobs = register(gw, bob, prompt="bob's prompt")
    # a key's identity is key:NAME, a token's user:NAME: the same name is another identity
    admin = gw.token("root", ("platform",))
    made = api(gw, "POST", "/api/keys", admin, json={"name": "bob", "groups": ["dev"]})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    with connect(gw, "alice", ("dev",)) as alice:
        alice.execute(f"/* hoop:prompt={bobs} */ SELECT 'alice-uses-bobs'")
        alice.execute("/* hoop:prompt=prm_neverregistered0 */ SELECT 'alice-uses-unknown'")
    with psycopg.connect(gw.conninfo(user="bob", password=key), autocommit=True) as keyed:
        keyed.execute(f"/* hoop:prompt={bobs} */ SELECT 'bobs-key-uses-bobs'")
    with connect(gw, "bob", ("dev",)) as own:
        own.execute(f"/* hoop:prompt={bobs} */ SELECT 'bob-uses-his'")

    found = report(gw, bobs, lambda r: len(statements(r)) >= 3)
    known = {c["data"]["sql"].split("'")[1]: c["prompt_known"] for c in statements(found)}
    assert known == {"alice-uses-bobs": "foreign", "bobs-key-uses-bobs": "foreign", "bob-uses-his": True}

    unknown = report(gw, "prm_neverregistered0", lambda r: len(statements(r)) >= 1)
    assert unknown["registered"] is False and "prompt" not in unknown
    assert [(c["subject"], c["prompt_known"]) for c in statements(unknown)] == [("alice", False)]
    text = show(gw, "prm_neverregistered0").stdout
    assert "registered  NO" in text and "UNKNOWN" in text and "alice-uses-unknown" in text
    assert "FOREIGN" in show(gw, bobs).stdout

    # through the API: the registrant sees their own work only, an auditor everything
    mine = api(gw, "GET", f"/api/prompts/{bobs}", bob).json()
    assert [c["data"]["sql"] for c in mine["caused"]] == [f"/* hoop:prompt={bobs} */ SELECT 'bob-uses-his'"]
    everything = api(gw, "GET", f"/api/prompts/{bobs}", gw.token("audrey", ("audit",))).json()
    assert len(statements(everything)) == 3
    assert api(gw, "GET", f"/api/prompts/{bobs}", key).status_code == 404  # key:bob is not user:bob

    missing = show(gw, "prm_nobodyeverusedit")
    assert missing.returncode == 1 and "no prompt 'prm_nobodyeverusedit'" in missing.stderr


def test_an_api_key_registers_and_tags(gw: Gateway) -> None:
    admin = gw.token("root", ("platform",))
    made = api(gw, "POST", "/api/keys", admin, json={"name": "agent-key", "groups": ["ai-agents"]})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    prompt_id = register(gw, key, prompt="count the accounts")
    with psycopg.connect(
        gw.conninfo(user="agent", password=key, application_name=f"hoop:prompt={prompt_id}"), autocommit=True
    ) as conn:
        conn.execute("SELECT 'by-key'")
    found = report(gw, prompt_id, lambda r: len(statements(r)) >= 1)
    assert found["registered_by"] == "key:agent-key"
    assert [(c["subject"], c["auth"], c["prompt_known"]) for c in statements(found)] == [
        ("agent-key", "apikey", True)
    ]
    assert api(gw, "GET", f"/api/prompts/{prompt_id}", key).json()["caused"]


def test_prompts_show_asks_the_api_without_a_store(gw: Gateway, tmp_path: Path) -> None:
    bot = gw.token("bot3", ("ai-agents",))
    prompt_id = register(gw, bot, prompt=f"card {CARD}")
    doc = json.loads(json.dumps(gw.doc))
    doc["gateway"]["data_dir"] = str(tmp_path / "elsewhere")
    config = tmp_path / "remote.toml"
    config.write_text(toml_dumps(doc))
    cmd = [sys.executable, "-m", "hoopgw", "prompts", "show", prompt_id, "-c", str(config)]
    refused = run(cmd, env=gw.env)
    assert refused.returncode == 1 and "--token" in refused.stderr
    answered = run([*cmd, "--json"], env={**gw.env, "HOOPGW_TOKEN": bot})
    assert answered.returncode == 0, answered.stderr
    (found,) = json.loads(answered.stdout)
    assert found["id"] == prompt_id and found["prompt"] == "card ************1111"
    other = run([*cmd, "--token", gw.token("mallory", ("ai-agents",))], env=gw.env)
    assert other.returncode == 1 and "no prompt" in other.stderr
