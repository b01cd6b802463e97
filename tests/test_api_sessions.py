"""The sessions control API (``/api/sessions``) against a REAL gateway child process and real Postgres.

Who sees what follows ``[gateway] admins`` and ``auditors``: auditors and admins read every session,
anyone else only the sessions of their own identity (subject *and* kind of credential); only admins end
a live session, whose client (psycopg, psql) then gets SQLSTATE 57P01 naming the admin.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from starlette.routing import Route

from hoopgw.api import SessionApi, SessionReader, build_app, openapi_document
from hoopgw.api._sessions import session_routes
from hoopgw.identity import Authenticator, LocalIssuer
from hoopgw.identity._keyfile import load_or_create_key
from hoopgw.identity._local import KEY_FILE

from ._support.gateway import Gateway
from ._support.pg import TestPg
from ._support.procs import clean_env, wait_until

GatewayFactory = Any
AUTH_ERROR = "authentication required: send 'Authorization: Bearer <token or API key>'"
#: plain users alice and bob, admin root, auditor eve
PEOPLE: dict[str, tuple[str, ...]] = {
    "alice": ("dev",),
    "bob": ("dev",),
    "root": ("admins",),
    "eve": ("auditors",),
}
UNKNOWN_ID = "0000000000000000"


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        gateway={"admins": ["group:admins"], "auditors": ["group:auditors"]}
    )
    return gateway


_TOKENS: dict[tuple[str, Path], str] = {}


def token(gw: Gateway, who: str) -> str:
    """A local-issuer token of one of PEOPLE (minted with the gateway's own issuer key)."""
    key = (who, gw.data_dir)
    if key not in _TOKENS:
        _TOKENS[key] = LocalIssuer(gw.data_dir, "hoopgw").issue(who, PEOPLE[who], 3600)
    return _TOKENS[key]


def call(
    gw: Gateway, method: str, path: str, who: str | None = None, *, bearer: str | None = None
) -> tuple[int, Any]:
    """One API request as ``who`` (or with ``bearer``): status and JSON body."""
    credential = bearer if bearer is not None else (token(gw, who) if who else None)
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else {}
    res = httpx.request(method, gw.api_url + path, headers=headers, timeout=15, trust_env=False)
    return res.status_code, res.json()


def connect(gw: Gateway, who: str, app: str, password: str | None = None) -> psycopg.Connection[Any]:
    """A psycopg session through the gateway as ``who`` (a token of theirs, or ``password``)."""
    dsn = gw.conninfo(user=who, password=password or token(gw, who), application_name=app)
    return psycopg.connect(dsn, autocommit=True)


def sessions(gw: Gateway, who: str | None, query: str = "", *, bearer: str | None = None) -> list[Any]:
    status, body = call(gw, "GET", f"/api/sessions?limit=1000{query}", who, bearer=bearer)
    assert status == 200, body
    assert isinstance(body, list)
    return body


def recorded(gw: Gateway, app: str, status: str = "closed") -> dict[str, Any]:
    """The session whose application_name is ``app``, once recorded with ``status`` (the auditor's view;
    the audit writer commits in batches)."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [s for s in sessions(gw, "eve") if s["params"].get("application_name") == app]
        return len(found) == 1 and found[0]["status"] == status

    wait_until(seen, timeout=15, interval=0.1, what=f"session {app} {status}")
    return found[0]


def detail(gw: Gateway, session_id: str, who: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """``GET /api/sessions/{id}`` as ``who`` once ``ready`` holds for it."""
    found: dict[str, Any] = {}

    def seen() -> bool:
        status, body = call(gw, "GET", f"/api/sessions/{session_id}", who)
        assert status == 200, body
        found.update(body)
        return ready(body)

    wait_until(seen, timeout=15, interval=0.1, what=f"session {session_id}")
    return found


def kinds(found: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in found["events"]]


def mark() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def create_key(gw: Gateway, name: str, groups: list[str]) -> str:
    res = httpx.post(
        gw.api_url + "/api/keys",
        json={"name": name, "groups": groups},
        headers={"Authorization": f"Bearer {token(gw, 'root')}"},
        timeout=15,
        trust_env=False,
    )
    assert res.status_code == 201, res.text
    return str(res.json()["key"])


def _expired_token(gw: Gateway) -> str:
    key = load_or_create_key(gw.data_dir / KEY_FILE)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "local",
        "aud": "hoopgw",
        "sub": "root",
        "groups": ["admins"],
        "jti": "x",
    }
    claims |= {"iat": now - 600, "nbf": now - 600, "exp": now - 120}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": LocalIssuer(gw.data_dir, "hoopgw").kid})


# ------------------------------------------------------------------------------------------ reading
def test_a_plain_user_sees_only_their_own_sessions(gw: Gateway) -> None:
    apps = {who: mark() for who in ("alice", "bob", "key")}
    prompt = httpx.post(
        gw.api_url + "/api/prompts",
        json={"prompt": "count the accounts", "assistant": "claude-code", "model": "m-1"},
        headers={"Authorization": f"Bearer {token(gw, 'alice')}"},
        timeout=15,
        trust_env=False,
    )
    assert prompt.status_code == 201, prompt.text
    prompt_id = prompt.json()["id"]
    with connect(gw, "alice", apps["alice"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute(f"/* hoop:prompt={prompt_id} */ SELECT 2")
        conn.execute("/* hoop:prompt=prm_nobody0000000000 */ SELECT 3")
    with connect(gw, "bob", apps["bob"]) as conn:
        conn.execute("SELECT 1")
    # an API key with alice's name is another identity: neither sees the other's sessions
    key = create_key(gw, "alice", ["dev"])
    with connect(gw, "alice", apps["key"], password=key) as conn:
        conn.execute("SELECT 1")
    a, b, k = (recorded(gw, apps[who]) for who in ("alice", "bob", "key"))
    assert (a["subject"], a["auth"], b["subject"], k["subject"], k["auth"]) == (
        "alice",
        "token",
        "bob",
        "alice",
        "apikey",
    )

    mine = sessions(gw, "alice")
    assert a["id"] in {s["id"] for s in mine}
    assert {(s["subject"], s["auth"]) for s in mine} == {("alice", "token")}
    assert {b["id"], k["id"]}.isdisjoint(s["id"] for s in mine)
    assert sessions(gw, "alice", "&subject=bob") == []
    bobs = {s["id"] for s in sessions(gw, "bob")}
    assert b["id"] in bobs and a["id"] not in bobs
    keys = sessions(gw, None, bearer=key)
    assert k["id"] in {s["id"] for s in keys} and {(s["subject"], s["auth"]) for s in keys} == {
        ("alice", "apikey")
    }

    # a later key that reuses a revoked key's name is yet another identity
    revoked = httpx.delete(
        gw.api_url + "/api/keys/alice",
        headers={"Authorization": f"Bearer {token(gw, 'root')}"},
        timeout=15,
        trust_env=False,
    )
    assert revoked.status_code == 200, revoked.text
    assert call(gw, "GET", "/api/sessions", bearer=key)[0] == 401
    successor = create_key(gw, "alice", ["dev"])
    assert sessions(gw, None, bearer=successor) == []
    status, body = call(gw, "GET", f"/api/sessions/{k['id']}", bearer=successor)
    assert (status, body) == (404, {"error": f"no session {k['id']}"})

    # someone else's session: the very answer an unknown id gets
    for other, who, bearer in (
        (b, "alice", None),
        (k, "alice", None),
        (a, None, successor),
        (a, "bob", None),
    ):
        status, body = call(gw, "GET", f"/api/sessions/{other['id']}", who, bearer=bearer)
        assert (status, body) == (404, {"error": f"no session {other['id']}"})
    assert call(gw, "GET", f"/api/sessions/{UNKNOWN_ID}", "alice") == (
        404,
        {"error": f"no session {UNKNOWN_ID}"},
    )

    # one's own, with its statements, their prompt tags and whether each tag is believable
    own = detail(gw, a["id"], "alice", lambda d: "session_close" in kinds(d))
    assert own["id"] == a["id"] and own["status"] == "closed" and own["statements"] == 3
    assert own["next_after"] is None
    statements = [e for e in own["events"] if e["kind"] == "statement"]
    assert [e["data"]["sql"].split("*/")[-1].strip() for e in statements] == [
        "SELECT 1",
        "SELECT 2",
        "SELECT 3",
    ]
    assert [(e["prompt_id"], e.get("prompt_known")) for e in statements] == [
        (None, None),
        (prompt_id, True),
        ("prm_nobody0000000000", False),
    ]
    assert kinds(own)[0] == "session_open" and kinds(own)[-1] == "session_close"
    assert all(e["session_id"] == a["id"] for e in own["events"])

    # auditors and admins see everyone's; the filters narrow it
    for who in ("eve", "root"):
        seen = {s["id"] for s in sessions(gw, who)}
        assert {a["id"], b["id"], k["id"]} <= seen, who
        status, body = call(gw, "GET", f"/api/sessions/{b['id']}", who)
        assert status == 200 and body["subject"] == "bob" and "statement" in kinds(body)
    only_bob = sessions(gw, "eve", "&subject=bob&status=closed&connection=bankdb")
    assert b["id"] in {s["id"] for s in only_bob} and {s["subject"] for s in only_bob} == {"bob"}
    assert sessions(gw, "eve", "&connection=nowhere") == []
    assert sessions(gw, "eve", "&status=open&subject=bob") == []
    newest_first = sessions(gw, "eve")
    assert [s["started_at"] for s in newest_first] == sorted(
        (s["started_at"] for s in newest_first), reverse=True
    )
    status, limited = call(gw, "GET", "/api/sessions?limit=1", "eve")
    assert status == 200 and [s["id"] for s in limited] == [newest_first[0]["id"]]

    # events come in pages
    status, page = call(gw, "GET", f"/api/sessions/{a['id']}?limit=2", "alice")
    assert status == 200 and len(page["events"]) == 2 and page["next_after"] == page["events"][-1]["seq"]
    status, rest = call(gw, "GET", f"/api/sessions/{a['id']}?after={page['next_after']}", "alice")
    assert status == 200 and rest["next_after"] is None
    assert [e["seq"] for e in page["events"] + rest["events"]] == [e["seq"] for e in own["events"]]


def test_credentials_and_arguments_are_checked(gw: Gateway) -> None:
    app = mark()
    with connect(gw, "alice", app) as conn:
        conn.execute("SELECT 1")
    sid = recorded(gw, app)["id"]
    expired = _expired_token(gw)
    tampered = token(gw, "root")[:-4] + "AAAA"
    for method, path in (
        ("GET", "/api/sessions"),
        ("GET", f"/api/sessions/{sid}"),
        ("POST", f"/api/sessions/{sid}/end"),
    ):
        for bearer in (None, "", "garbage", tampered, expired):
            headers = {"Authorization": f"Bearer {bearer}".strip()} if bearer is not None else {}
            res = httpx.request(method, gw.api_url + path, headers=headers, timeout=15, trust_env=False)
            assert (res.status_code, res.json()) == (401, {"error": AUTH_ERROR}), (method, path, bearer)
            assert res.headers["www-authenticate"].startswith("Bearer")

    for query in (
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "limit=1.5",
        "limit=%C2%B2",  # a superscript two: a digit to str.isdigit, not to int()
        "limit=" + "9" * 5000,
        "status=pending",
        "colour=blue",
        "subject=" + "x" * 2000,
    ):
        status, body = call(gw, "GET", f"/api/sessions?{query}", "eve")
        assert status == 400 and body["error"], query
    for query in ("limit=0", "limit=1001", "after=-1", "after=x", "status=open"):
        status, body = call(gw, "GET", f"/api/sessions/{sid}?{query}", "eve")
        assert status == 400 and body["error"], query
    assert call(gw, "GET", "/api/sessions?limit=1000&status=closed", "eve")[0] == 200
    for bad in (UNKNOWN_ID, "not-a-session-id", "x" * 300):
        assert call(gw, "GET", f"/api/sessions/{bad}", "eve") == (404, {"error": f"no session {bad}"})
        assert call(gw, "POST", f"/api/sessions/{bad}/end", "root") == (
            404,
            {"error": f"no live session {bad}"},
        )


# ------------------------------------------------------------------------------------------- ending
def test_only_an_admin_ends_a_live_session_and_its_client_is_told(gw: Gateway, admin: Any) -> None:
    app = mark()
    conn = connect(gw, "alice", app)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        conn.execute("SELECT 1")
        live = recorded(gw, app, "open")
        sid = live["id"]
        assert {s["id"] for s in sessions(gw, "alice", "&status=open")} >= {sid}
        # auditors read it, the user owns it, neither may end it
        for who in ("eve", "alice", "bob"):
            status, body = call(gw, "POST", f"/api/sessions/{sid}/end", who)
            assert status == 403 and "gateway.admins" in body["error"], who
        assert conn.execute("SELECT 2").fetchone() == (2,)

        # ended in the middle of a statement
        sleeping = pool.submit(conn.execute, f"SELECT pg_sleep(30) /* {app} */")
        wait_until(
            lambda: (
                admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
                    (f"%pg_sleep(30) /* {app} */%",),
                ).fetchone()[0]
                == 1
            ),
            timeout=10,
            what="the statement runs upstream",
        )
        started = time.monotonic()
        assert call(gw, "POST", f"/api/sessions/{sid}/end", "root") == (200, {"id": sid, "status": "closed"})
        with pytest.raises(psycopg.errors.AdminShutdown) as caught:
            sleeping.result(timeout=10)
        assert time.monotonic() - started < 5
        assert caught.value.sqlstate == "57P01"
        assert "ended by the gateway administrator user:root" in str(caught.value)
        assert conn.closed or conn.broken
        # it is no longer live
        assert call(gw, "POST", f"/api/sessions/{sid}/end", "root") == (
            404,
            {"error": f"no live session {sid}"},
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        conn.close()

    ended = detail(gw, sid, "eve", lambda d: d["status"] == "closed" and "session_close" in kinds(d))
    assert "57P01" in ended["close_reason"] and "user:root" in ended["close_reason"]
    (event,) = [e for e in ended["events"] if e["kind"] == "session_ended_by_admin"]
    assert event["data"] == {"id": sid, "by": "user:root", "subject": "root", "auth": "token"}
    assert kinds(ended).index("session_ended_by_admin") < kinds(ended).index("session_close")
    # the owner reads it too, with who ended it
    assert "session_ended_by_admin" in kinds(detail(gw, sid, "alice", lambda d: True))
    # and the chain still verifies
    res = gw.run_cli("audit", "verify")
    assert res.returncode == 0, res.stdout + res.stderr


def test_ending_a_session_stops_its_running_statement(gw: Gateway, admin: Any, pg: TestPg) -> None:
    table = f"ended_{uuid.uuid4().hex[:8]}"
    pg.psql(f"CREATE TABLE {table} (id int, v int); INSERT INTO {table} VALUES (1, 0);", user="app")
    app = mark()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with connect(gw, "alice", app) as conn:
            conn.execute("SELECT 1")
            sid = recorded(gw, app, "open")["id"]
            update = f"UPDATE {table} SET v = 1 WHERE pg_sleep(3) IS NOT NULL"
            running = pool.submit(conn.execute, update)
            active = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = %s"
            wait_until(lambda: admin.execute(active, (update,)).fetchone()[0] == 1, timeout=10)
            assert call(gw, "POST", f"/api/sessions/{sid}/end", "root")[0] == 200
            with pytest.raises(psycopg.errors.AdminShutdown):
                running.result(timeout=10)
        # the admin ended the session: its write must not go on to commit upstream
        wait_until(lambda: admin.execute(active, (update,)).fetchone()[0] == 0, timeout=10)
        assert pg.psql(f"SELECT v FROM {table}").strip() == "0"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        pg.psql(f"DROP TABLE {table}", user="app")


def test_an_idle_psql_session_is_ended(gw: Gateway) -> None:
    app = mark()
    cmd = gw.psql_cmd("-v", "VERBOSITY=verbose", user="bob", password=token(gw, "bob"), application_name=app)
    psql = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert psql.stdin is not None
        psql.stdin.write("SELECT 'first';\n")
        psql.stdin.flush()
        sid = recorded(gw, app, "open")["id"]
        assert call(gw, "POST", f"/api/sessions/{sid}/end", "root") == (200, {"id": sid, "status": "closed"})
        out, err = psql.communicate("SELECT 'second';\n", timeout=20)
    finally:
        if psql.poll() is None:
            psql.kill()
            psql.communicate()
    assert "first" in out and "second" not in out
    assert "57P01" in err and "ended by the gateway administrator user:root" in err
    assert psql.returncode != 0


# -------------------------------------------------------------------------------------- the document
def test_the_routes_are_described(tmp_path: Path) -> None:
    api = SessionApi(SessionReader(tmp_path), Authenticator([]))
    app = build_app(lambda: {}, routes=session_routes(api))
    routes = [r for r in app.routes if isinstance(r, Route) and r.path.startswith("/api/sessions")]
    served = {(r.path, m.lower()) for r in routes for m in r.methods or ()}
    assert served == {
        ("/api/sessions", "get"),
        ("/api/sessions", "head"),
        ("/api/sessions/{id}", "get"),
        ("/api/sessions/{id}", "head"),
        ("/api/sessions/{id}/end", "post"),
    }
    paths = openapi_document()["paths"]
    described = {(p, m) for p, item in paths.items() if p.startswith("/api/sessions") for m in item}
    assert described == {(p, m) for p, m in served if m != "head"}
    for path, item in paths.items():
        if path.startswith("/api/sessions/{id}"):
            for op in item.values():
                assert [p["name"] for p in op["parameters"] if p["in"] == "path"] == ["id"]
    end = paths["/api/sessions/{id}/end"]["post"]
    assert set(end["responses"]) == {"200", "401", "403", "404"}
    assert openapi_document()["components"]["schemas"]["SessionDetail"]
