"""API keys: the key format, the store and verifier, and end to end through a real gateway and PostgreSQL."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import ssl
import struct
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hoopgw.audit import AuditStore
from hoopgw.config import load_config
from hoopgw.errors import AuthError
from hoopgw.identity import (
    KEY_PATTERN,
    ApiKeyError,
    ApiKeyStore,
    ApiKeyVerifier,
    Authenticator,
    LocalIssuer,
    create_key,
    parse_key,
)
from hoopgw.identity._apikeys import BASE62, KEY_LENGTH, PREFIX, checksum, format_key, new_key
from hoopgw.identity._keystore import KeyNameTaken

from ._support.gateway import Gateway
from ._support.procs import wait_until

GatewayFactory = Any
ADMIN = ("root", ("admins",))
POLICY = {
    "policy": [
        {
            "name": "all",
            "subjects": ["group:admins", "group:ai-agents", "group:dev", "key:solo"],
            "connections": ["*"],
            "allow": ["*"],
        }
    ]
}
#: Every key created in this module: none may ever be written to the store or the log.
CREATED: list[str] = []


# --------------------------------------------------------------------------------------------- format
def test_format_round_trip() -> None:
    key = new_key()
    assert key.startswith(PREFIX) and len(key) == KEY_LENGTH == 57
    assert KEY_PATTERN.fullmatch(key) and re.fullmatch(r"hoopgw_[0-9A-Za-z]{50}", key)
    parsed = parse_key(key)
    assert len(parsed.key_id) == 12 and len(parsed.secret) == 32
    assert format_key(parsed.key_id, parsed.secret) == key
    assert key.endswith(checksum(key[:-6]))
    assert KEY_PATTERN.findall(f"leaked: export TOKEN={key}; echo") == [key]
    assert len({new_key() for _ in range(200)}) == 200
    with pytest.raises(ValueError, match="base62"):
        format_key("short", parsed.secret)
    with pytest.raises(ValueError, match="base62"):
        format_key(parsed.key_id, "-" * 32)


def test_checksum_known_value() -> None:
    # CRC32("hoopgw_" + "0" * 44) in six base62 digits: fixed, so scanners can re-implement it.
    body = PREFIX + "0" * 44
    import zlib

    value = zlib.crc32(body.encode())
    digits = ""
    for _ in range(6):
        value, d = divmod(value, 62)
        digits = BASE62[d] + digits
    assert checksum(body) == digits
    assert format_key("0" * 12, "0" * 32) == body + digits


def test_checksum_catches_every_single_character_change() -> None:
    key = new_key()
    for pos in range(len(PREFIX), len(key)):
        for replacement in ("0", "z"):
            if key[pos] == replacement:
                continue
            typo = key[:pos] + replacement + key[pos + 1 :]
            with pytest.raises(ApiKeyError, match="checksum") as info:
                parse_key(typo)
            assert typo not in str(info.value) and key[len(PREFIX) :] not in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not an API key"),
        ("hoopgx_" + "a" * 50, "not an API key"),
        ("hoopgw_", "malformed"),
        ("hoopgw_" + "a" * 49, "malformed"),
        ("hoopgw_" + "a" * 51, "malformed"),
        ("hoopgw_" + "a" * 49 + "-", "malformed"),
        ("hoopgw_" + "a" * 49 + "\u00e9", "malformed"),
        ("hoopgw_" + "a" * 50, "checksum"),
    ],
)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(ApiKeyError, match=reason) as info:
        parse_key(text)
    assert isinstance(info.value, AuthError) and info.value.sqlstate == "28P01"
    if len(text) > len(PREFIX):
        assert text[len(PREFIX) :] not in str(info.value)


# ------------------------------------------------------------------------------------ store/verifier
def _db_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("audit.db*")))


def test_store_and_verifier(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path)
    verifier = ApiKeyVerifier(store)
    assert store.list_keys() == [] and store.lookup("x") is None and not (tmp_path / "audit.db").exists()
    record, key = create_key(store, "ci-bot", ["ai-agents", "readers", "ai-agents"], 3600, "user:root")
    assert verifier.accepts(key) and not verifier.accepts("eyJx.y.z")
    assert record.groups == ("ai-agents", "readers") and record.id == parse_key(key).key_id
    principal = asyncio.run(verifier.verify(key))
    assert (principal.subject, principal.groups, principal.auth) == (
        "ci-bot",
        frozenset({"ai-agents", "readers"}),
        "apikey",
    )
    assert principal.token_id == record.id and principal.expires_at == pytest.approx(
        time.time() + 3600, abs=5
    )
    assert principal.matches("key:ci-bot") and principal.matches("group:readers")
    assert not principal.matches("user:ci-bot")

    # A second store object (another connection) sees the write at once: it was durable.
    other = ApiKeyStore(tmp_path)
    assert [r.public()["status"] for r in other.list_keys()] == ["active"]
    with pytest.raises(KeyNameTaken, match="already exists"):
        create_key(other, "ci-bot", [], 60, "user:root")

    # Expiry, checked at a later "now".
    with pytest.raises(ApiKeyError, match="'ci-bot' has expired"):
        verifier.verify_now(key, time.time() + 3601)

    # Unknown id, and a known id with another secret (valid checksum, wrong hash): both "unknown".
    for bad in (new_key(), new_key(record.id)):
        with pytest.raises(ApiKeyError, match="unknown") as info:
            asyncio.run(verifier.verify(bad))
        assert bad[len(PREFIX) :] not in str(info.value)

    revoked = other.revoke("ci-bot", "user:root")
    assert revoked.revoked_by == "user:root" and revoked.public()["status"] == "revoked"
    with pytest.raises(ApiKeyError, match="'ci-bot' was revoked") as info:
        asyncio.run(verifier.verify(key))
    assert key not in str(info.value)
    from hoopgw.identity._keystore import KeyNotFound

    with pytest.raises(KeyNotFound):
        other.revoke("ci-bot", "user:root")

    # The name is free again once revoked; revoking by id works too.
    record2, key2 = create_key(store, "ci-bot", [], 60, "key:boss")
    assert [r.name for r in store.list_keys()] == ["ci-bot", "ci-bot"]
    assert store.revoke(record2.id, "user:root").id == record2.id
    for bad_args in (
        ("bad name", [], 60.0),
        ("ok", ["bad group"], 60.0),
        ("ok", [], 0.0),
        ("ok", [], 367 * 86400.0),
    ):
        with pytest.raises(ValueError):
            create_key(store, *bad_args, "user:root")

    store.close()
    other.close()
    raw = _db_bytes(tmp_path)
    for k in (key, key2):
        assert k.encode() not in raw and parse_key(k).secret.encode() not in raw


def test_authenticator_accepts_api_keys(tmp_path: Path) -> None:
    path = tmp_path / "hoopgw.toml"
    path.write_text('[gateway]\ndata_dir = "d"\n')
    config = load_config(path)
    _, key = create_key(ApiKeyStore(config.gateway.data_dir), "agent-7", ["ai-agents"], 60, "user:root")
    auth = Authenticator.from_config(config)
    got = asyncio.run(auth.authenticate(key))
    assert (got.subject, got.auth) == ("agent-7", "apikey")
    token = LocalIssuer(config.gateway.data_dir, "hoopgw").issue("alice", [], 60)
    assert asyncio.run(auth.authenticate(token)).auth == "token"
    with pytest.raises(ApiKeyError, match="checksum"):
        asyncio.run(auth.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")))


# ------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Gateway:
    gateway: Gateway = module_gateway_factory(gateway={"admins": ["group:admins", "key:boss"]}, extra=POLICY)
    return gateway


def _keys(gw: Gateway, *args: str, token: str | None = None, env: dict[str, str] | None = None) -> Any:
    token = token if token is not None else gw.token(*ADMIN)
    return gw.run_cli("keys", *args, "--token", token, env=env)


def _create(gw: Gateway, name: str, groups: str = "ai-agents", expires: str = "30d") -> str:
    res = _keys(gw, "create", "--name", name, "--groups", groups, "--expires", expires)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    key = str(res.stdout).strip()
    assert res.stdout == key + "\n" and KEY_PATTERN.fullmatch(key), res.stdout
    assert f"created API key {name!r}" in res.stderr and "shown only this once" in res.stderr
    assert key not in res.stderr
    CREATED.append(key)
    return key


def _list(gw: Gateway) -> dict[str, dict[str, Any]]:
    res = _keys(gw, "list", "--json")
    assert res.returncode == 0, res.stderr
    assert parse_key_free(res.stdout)
    items: list[dict[str, Any]] = json.loads(res.stdout)
    assert all({"id", "status", "name"} <= set(item) for item in items)
    return {item["id"]: item for item in items}


def parse_key_free(text: str) -> bool:
    """True when ``text`` contains no key and no secret of this module."""
    return not KEY_PATTERN.search(text) and not any(parse_key(k).secret in text for k in CREATED)


def _http(
    gw: Gateway,
    method: str,
    path: str,
    body: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.api_port, timeout=10)
    try:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data) if data else None
    finally:
        conn.close()


def _psql_as_key(gw: Gateway, key: str, sql: str = "SELECT current_user, 40 + 2;") -> Any:
    return gw.psql(sql, user="robot", password=key)


def _login_error(gw: Gateway, password: str) -> dict[str, str]:
    """Log in over TLS with a bare-bones client; return the fields of the server's ErrorResponse.

    ``C`` is the SQLSTATE, ``D`` the detail. (psycopg does not expose the SQLSTATE of a failed
    connection; asyncpg leaks its socket when the login fails.)
    """
    with socket.create_connection(("127.0.0.1", gw.port()), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw) as tls:
            params = b"user\0robot\0database\0bank\0\0"
            tls.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)

            def message() -> tuple[bytes, bytes]:
                head = b""
                while len(head) < 5:
                    head += tls.recv(5 - len(head))
                body = b""
                while len(body) < struct.unpack("!i", head[1:])[0] - 4:
                    body += tls.recv(65536)
                return head[:1], body

            assert message() == (b"R", struct.pack("!i", 3))  # cleartext password, please
            secret = password.encode() + b"\0"
            tls.sendall(b"p" + struct.pack("!i", 4 + len(secret)) + secret)
            kind, body = message()
    assert kind == b"E", (kind, body)
    return {f[:1].decode(): f[1:].decode() for f in body.split(b"\0") if f}


def test_create_use_and_list(gw: Gateway) -> None:
    key = _create(gw, "ci-bot", groups="ai-agents,readers")
    res = _psql_as_key(gw, key)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout.strip() == "app|42"

    keys = _list(gw)
    [item] = [k for k in keys.values() if k["name"] == "ci-bot"]
    assert item["id"] == parse_key(key).key_id and item["status"] == "active"
    assert item["groups"] == ["ai-agents", "readers"] and item["created_by"] == "user:root"
    assert item["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=120)
    assert "hash" not in item and "key" not in item

    table = _keys(gw, "list")
    assert table.returncode == 0 and "ci-bot" in table.stdout and "active" in table.stdout
    assert parse_key_free(table.stdout)

    sessions = json.loads(gw.run_cli("sessions", "list", "--json").stdout)
    assert any(s["subject"] == "ci-bot" and s["auth"] == "apikey" for s in sessions)
    # The creation is in the audit trail, without the key or its hash.
    with AuditStore.open(gw.data_dir, create=False) as store:
        wait_until(lambda: any(e["kind"] == "key_created" for e in store.events()), 5, what="key_created")
        [event] = [e for e in store.events() if e["kind"] == "key_created" and e["data"]["name"] == "ci-bot"]
    assert event["data"]["id"] == item["id"] and event["data"]["by"] == "user:root"
    assert set(event["data"]) == {"id", "name", "groups", "expires_at", "by"}


def test_json_create_and_keys_cannot_be_admins(gw: Gateway) -> None:
    res = _keys(gw, "create", "--name", "worker", "--groups", "ops", "--json")
    assert res.returncode == 0, res.stderr
    [created] = json.loads(res.stdout)
    CREATED.append(created["key"])
    assert {"id", "name", "key", "groups", "expires_at", "created_at", "status"} <= set(created)
    assert created["status"] == "active" and created["expires_at"] - created["created_at"] == pytest.approx(
        90 * 86400
    )
    # an ordinary key is not an admin
    status, _, body = _http(gw, "GET", "/api/keys", token=created["key"])
    assert status == 403 and "gateway.admins" in body["error"]
    # no key may be an admin (key:boss is listed, group admins is listed): a key minting keys would
    # outlive the revocation of its own creator
    for name, groups in (("boss", "ops"), ("sneaky", "ops,admins")):
        res = _keys(gw, "create", "--name", name, "--groups", groups)
        assert res.returncode == 1 and "cannot be a gateway admin" in res.stderr, res.stderr
    listed = json.loads(_keys(gw, "list", "--json").stdout)
    assert not {"boss", "sneaky"} & {k["name"] for k in listed}


def test_api_refuses_missing_bad_and_non_admin_credentials(gw: Gateway) -> None:
    for token in (None, "", "not-a-token", gw.token(*ADMIN)[:-4] + "AAAA", new_key()):
        status, headers, body = _http(gw, "GET", "/api/keys", token=token)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert body == {"error": "authentication required: send 'Authorization: Bearer <token or API key>'"}
    status, _, _ = _http(gw, "GET", "/api/keys", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert status == 401
    bob = gw.token("bob", ["dev"])
    for method, path in (("GET", "/api/keys"), ("POST", "/api/keys"), ("DELETE", "/api/keys/x")):
        status, _, body = _http(gw, method, path, body=b'{"name": "x"}', token=bob)
        assert status == 403, (method, path)

    res = _keys(gw, "list", token=bob)
    assert res.returncode == 1 and "not allowed (403)" in res.stderr and "gateway.admins" in res.stderr
    res = _keys(gw, "list", token="garbage")
    assert res.returncode == 1 and "refused the token (401)" in res.stderr
    res = gw.run_cli("keys", "list")
    assert res.returncode == 1 and "no token" in res.stderr and "HOOPGW_TOKEN" in res.stderr
    res = gw.run_cli("keys", "list", "--json", env={"HOOPGW_TOKEN": gw.token(*ADMIN)})
    assert res.returncode == 0 and isinstance(json.loads(res.stdout), list)


def test_api_validates_input(gw: Gateway) -> None:
    admin = gw.token(*ADMIN)

    def post(body: bytes) -> tuple[int, Any]:
        status, _, data = _http(gw, "POST", "/api/keys", body=body, token=admin)
        return status, data

    cases: list[tuple[bytes, int, str]] = [
        (b'{"name": "-bad"}', 400, "name must be"),
        (b'{"name": "' + b"a" * 64 + b'"}', 400, "name must be"),
        (b'{"name": "ok", "groups": "admins"}', 400, "groups must be a list"),
        (b'{"name": "ok", "groups": ["a b"]}', 400, "each group"),
        (b'{"name": "ok", "expires": 0}', 400, "positive"),
        (b'{"name": "ok", "expires": "400d"}', 400, "366 days"),
        (b'{"name": "ok", "expires": "soon"}', 400, "invalid duration"),
        (b'{"name": "ok", "expires": true}', 400, "expires must be"),
        (b'{"name": "ok", "roles": []}', 400, "unknown field(s): roles"),
        (b"[1]", 400, "JSON object"),
        (b"{not json", 400, "not valid JSON"),
        (b'{"name": "ok", "groups": ["' + b"x" * 20000 + b'"]}', 413, "larger than"),
    ]
    for body, status, message in cases:
        got, data = post(body)
        assert (got, message in data["error"]) == (status, True), (body[:40], got, data)
    status, data = post(b'{"name": "dup", "groups": ["ai-agents"], "expires": 60}')
    assert status == 201 and data["expires_at"] - data["created_at"] == pytest.approx(60)
    CREATED.append(data["key"])
    status, data = post(b'{"name": "dup"}')
    assert status == 409 and "already exists" in data["error"]
    res = _keys(gw, "create", "--name", "dup")
    assert res.returncode == 1 and "already exists" in res.stderr and "(409)" in res.stderr
    res = _keys(gw, "revoke", "no-such-key")
    assert res.returncode == 1 and "no API key named 'no-such-key'" in res.stderr
    assert "ok" not in {k["name"] for k in _list(gw).values()}


def test_revoke_refuses_new_connections_and_ends_live_sessions(gw: Gateway) -> None:
    key = _create(gw, "doomed")
    with (
        psycopg.connect(gw.conninfo(user="robot", password=key), autocommit=True) as live,
        psycopg.connect(gw.conninfo(user="alice", groups=("dev",)), autocommit=True) as other,
    ):
        assert live.execute("SELECT 1").fetchone() == (1,)
        res = _keys(gw, "revoke", "doomed")
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"revoked API key 'doomed' (id {parse_key(key).key_id})\n"
        with pytest.raises(psycopg.OperationalError, match="the API key 'doomed' was revoked") as info:
            live.execute("SELECT 1")
        assert info.value.sqlstate in (None, "28P01")
        # Sessions of other callers are untouched.
        assert other.execute("SELECT 2").fetchone() == (2,)
    err = _login_error(gw, key)
    assert err["C"] == "28P01" and err["D"] == "API key 'doomed' was revoked"
    assert _list(gw)[parse_key(key).key_id]["status"] == "revoked"
    with AuditStore.open(gw.data_dir, create=False) as store:
        wait_until(lambda: any(e["kind"] == "key_revoked" for e in store.events()), 5, what="key_revoked")
        revoked = [e["data"] for e in store.events() if e["kind"] == "key_revoked"]
    assert {"id": parse_key(key).key_id, "name": "doomed", "by": "user:root"} in revoked
    # The name can be used again.
    again = _create(gw, "doomed")
    assert _psql_as_key(gw, again).returncode == 0


def test_expired_key_is_refused(gw: Gateway) -> None:
    res = _keys(gw, "create", "--name", "brief", "--expires", "2s", "--json")
    assert res.returncode == 0, res.stderr
    [created] = json.loads(res.stdout)
    CREATED.append(created["key"])
    wait_until(lambda: time.time() > created["expires_at"] + 0.2, 10, what="the key's expiry")
    err = _login_error(gw, created["key"])
    assert err["C"] == "28P01" and err["D"] == "API key 'brief' has expired"
    assert _list(gw)[created["id"]]["status"] == "expired"


@pytest.mark.parametrize("case", ["malformed", "checksum", "unknown_id", "wrong_secret"])
def test_bad_keys_are_refused(gw: Gateway, case: str) -> None:
    good = _create(gw, f"real-{case.replace('_', '-')}")
    bad = {
        "malformed": good[:-3],
        "checksum": good[:20] + ("x" if good[20] != "x" else "y") + good[21:],
        "unknown_id": new_key(),
        "wrong_secret": new_key(parse_key(good).key_id),
    }[case]
    reason = {
        "malformed": "malformed",
        "checksum": "checksum does not match",
        "unknown_id": "unknown",
        "wrong_secret": "unknown",
    }[case]
    err = _login_error(gw, bad)
    assert err["C"] == "28P01" and reason in err["D"] and bad not in str(err)
    res = _psql_as_key(gw, bad)
    assert res.returncode != 0 and 'password authentication failed for user "robot"' in res.stderr
    assert reason in res.stderr
    assert bad not in gw.log_text()


def test_the_cli_never_sends_the_token_through_a_proxy(gw: Gateway) -> None:
    # a proxy from the environment would see the admin's bearer token and every new key: the CLI
    # talks to the gateway directly (here the "proxy" is a closed port: using it would fail)
    from hoopgw._pgcluster import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    env = {"http_proxy": dead, "HTTP_PROXY": dead, "https_proxy": dead, "no_proxy": "", "NO_PROXY": ""}
    res = _keys(gw, "list", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert isinstance(json.loads(res.stdout), list)


def test_no_key_reaches_the_store_or_the_log(gw: Gateway) -> None:
    """Runs after the tests above: every key they created, used and refused."""
    assert len(CREATED) >= 9
    assert gw.stop() == 0  # flushes the audit writer
    raw = _db_bytes(gw.data_dir)
    log = gw.log_text()
    assert b"key_created" in raw and b"key_revoked" in raw and "authentication failed" in log
    for key in CREATED:
        secret = parse_key(key).secret
        assert key.encode() not in raw and secret.encode() not in raw
        assert key not in log and secret not in log


def test_cli_without_a_running_gateway(gateway_factory: GatewayFactory) -> None:
    gw: Gateway = gateway_factory(start=False)
    res = gw.run_cli("keys", "list", "--token", "whatever")
    assert res.returncode == 1
    assert f"cannot reach the gateway API at http://127.0.0.1:{gw.api_port}" in res.stderr
    assert "is `hoopgw serve` running?" in res.stderr


@pytest.mark.parametrize("command", [[], ["create"], ["list"], ["revoke"]])
def test_help(gateway_factory: GatewayFactory, command: list[str]) -> None:
    gw: Gateway = gateway_factory(start=False)
    res = gw.run_cli("keys", *command, "--help")
    assert res.returncode == 0 and f"usage: hoopgw keys {' '.join(command)}".strip() in res.stdout
    if command:
        assert "--token" in res.stdout and "-c FILE, --config FILE" in res.stdout
