"""``/api/ssh-keys``, ``/api/ssh/certificate``, ``hoopgw ssh-keys`` and ``hoopgw login --ssh`` against a REAL
gateway child process: roles, bad keys, audit events, and certificates that the real ``ssh-keygen`` reads."""

from __future__ import annotations

import json
import re
import stat
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from hoopgw.audit import AuditStore
from hoopgw.config import load_config
from hoopgw.identity import LocalIssuer
from hoopgw.identity._keyfile import load_or_create_key
from hoopgw.identity._local import KEY_FILE

from ._support.gateway import Gateway
from ._support.idp import Idp
from ._support.procs import require_binary, run, wait_until
from .test_login import start_login
from .test_ssh_identity import cert_listing, keygen, keygen_fingerprint

GatewayFactory = Any
ROOT = ("root", ("admins",))
EVE = ("eve", ("auditors",))


@pytest.fixture(scope="module")
def gw(module_gateway_factory: GatewayFactory) -> Gateway:
    gateway: Gateway = module_gateway_factory(
        gateway={"admins": ["group:admins"], "auditors": ["group:auditors"]}
    )
    return gateway


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sshkeys")
    for name in ("a", "b", "c", "d", "e"):
        keygen(d / f"id_{name}", comment=f"{name}@laptop")
    keygen(d / "id_rsa", "rsa", "-b", "3072")
    return d


def call(
    gw: Gateway, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    res = httpx.request(
        method, gw.api_url + path, headers=headers, json=body, timeout=15, trust_env=False
    )  # fmt: skip
    return res.status_code, res.json()


def cli(gw: Gateway, *args: str, token: str | None = None, stdin: str | None = None) -> Any:
    env = {"HOOPGW_TOKEN": token if token is not None else gw.token(*ROOT)}
    return run(gw.cli(*args), env={**gw.env, **env}, timeout=60, input=stdin)


def events(gw: Gateway, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The ``kind`` audit events, once at least ``count`` are committed (the writer commits in batches)."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        with AuditStore.open(gw.data_dir, create=False) as store:
            found[:] = [e for e in store.events() if e["kind"] == kind]
        return len(found) >= count

    wait_until(seen, 10, what=kind)
    return found


def expired_token(gw: Gateway, who: tuple[str, tuple[str, ...]]) -> str:
    key = load_or_create_key(gw.data_dir / KEY_FILE)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "local",
        "aud": "hoopgw",
        "sub": who[0],
        "groups": list(who[1]),
        "jti": "x",
    }
    claims |= {"iat": now - 600, "nbf": now - 600, "exp": now - 120}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": LocalIssuer(gw.data_dir, "hoopgw").kid})


# ------------------------------------------------------------------------------------------ ssh-keys
def test_add_list_remove(gw: Gateway, keydir: Path) -> None:
    pub = keydir / "id_a.pub"
    fp = keygen_fingerprint(pub)
    res = cli(gw, "ssh-keys", "add", "--subject", "alice", "--groups", "ops,dev", str(pub))
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout == f"registered {fp} (ssh-ed25519) for alice (groups dev, ops)\n"

    # stdin, --json
    res = cli(gw, "ssh-keys", "add", "-s", "bob", "--json", "-", stdin=(keydir / "id_rsa.pub").read_text())
    assert res.returncode == 0, res.stderr
    [bob] = json.loads(res.stdout)
    assert bob["id"] == keygen_fingerprint(keydir / "id_rsa.pub") and bob["algorithm"] == "ssh-rsa"
    assert bob["groups"] == [] and bob["added_by"] == "user:root" and bob["status"] == "active"

    listed = json.loads(cli(gw, "ssh-keys", "list", "--json").stdout)
    [alice] = [k for k in listed if k["id"] == fp]
    assert (
        alice["subject"] == "alice" and alice["groups"] == ["dev", "ops"] and alice["comment"] == "a@laptop"
    )
    assert alice["public_key"] == " ".join(pub.read_text().split()[:2]) and alice["status"] == "active"
    assert all({"id", "status"} <= set(k) for k in listed)
    table = cli(gw, "ssh-keys", "list")
    assert table.returncode == 0 and fp in table.stdout and "a@laptop" in table.stdout
    assert table.stdout.splitlines()[0].split()[:4] == ["ID", "SUBJECT", "STATUS", "GROUPS"]

    # auditors read; the API answers the same list
    status, body = call(gw, "GET", "/api/ssh-keys", gw.token(*EVE))
    assert status == 200 and [k["id"] for k in body] == [k["id"] for k in listed]

    res = cli(gw, "ssh-keys", "remove", fp)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"removed {fp} of alice\n"
    res = cli(gw, "ssh-keys", "remove", fp)
    assert res.returncode == 1 and "no registered SSH key" in res.stderr and "(404)" in res.stderr
    [gone] = [k for k in json.loads(cli(gw, "ssh-keys", "list", "--json").stdout) if k["id"] == fp]
    assert gone["status"] == "removed" and gone["removed_by"] == "user:root"
    # the fingerprint without its prefix, through the API (its '/' and '+' URL-encoded)
    status, body = call(
        gw, "DELETE", "/api/ssh-keys/" + urllib.parse.quote(bob["id"][7:], safe=""), gw.token(*ROOT)
    )
    assert status == 200 and body["id"] == bob["id"] and body["status"] == "removed"

    added = events(gw, "ssh_key_added", 2)
    assert {e["data"]["fingerprint"] for e in added} >= {fp, bob["id"]}
    [event] = [e for e in added if e["data"]["fingerprint"] == fp]
    assert event["data"] == {
        "fingerprint": fp,
        "subject": "alice",
        "groups": ["dev", "ops"],
        "algorithm": "ssh-ed25519",
        "comment": "a@laptop",
        "by": "user:root",
    }
    removed = events(gw, "ssh_key_removed", 2)
    assert {(e["data"]["fingerprint"], e["data"]["subject"], e["data"]["by"]) for e in removed} >= {
        (fp, "alice", "user:root"),
        (bob["id"], "bob", "user:root"),
    }


def test_bad_keys_are_refused(gw: Gateway, keydir: Path, tmp_path: Path) -> None:
    pub = keydir / "id_b.pub"
    ok = cli(gw, "ssh-keys", "add", "--subject", "carol", str(pub))
    assert ok.returncode == 0, ok.stderr
    dup = cli(gw, "ssh-keys", "add", "--subject", "dave", str(pub))
    assert dup.returncode == 1 and "already registered (to carol)" in dup.stderr and "(409)" in dup.stderr

    # a private key never leaves the machine
    res = cli(gw, "ssh-keys", "add", "--subject", "carol", str(keydir / "id_c"))
    assert res.returncode == 1 and "PRIVATE key: it was not sent" in res.stderr
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("this is not a key\n")
    res = cli(gw, "ssh-keys", "add", "--subject", "carol", str(garbage))
    assert res.returncode == 1 and "not an OpenSSH public key" in res.stderr and "(400)" in res.stderr
    status, body = call(
        gw, "POST", "/api/ssh/certificate", gw.token("carol", ["dev"]), {"public_key": pub.read_text()}
    )
    assert status == 201, body
    cert = tmp_path / "id_b-cert.pub"
    cert.write_text(body["certificate"] + "\n")
    res = cli(gw, "ssh-keys", "add", "--subject", "carol", str(cert))
    assert res.returncode == 1 and "certificate, not a public key" in res.stderr
    res = cli(gw, "ssh-keys", "add", "--subject", "carol", str(tmp_path / "missing.pub"))
    assert res.returncode == 1 and "cannot read" in res.stderr

    admin = gw.token(*ROOT)
    good = (keydir / "id_c.pub").read_text()
    for body_in, why in (
        ({"subject": "x", "public_key": (keydir / "id_c").read_text()}, "PRIVATE key"),
        ({"public_key": good}, "subject is required"),
        ({"subject": "x", "groups": "dev", "public_key": good}, "groups must be a list"),
        ({"subject": "x", "groups": ["bad group"], "public_key": good}, "each group"),
        ({"subject": "x"}, "public_key is required"),
        ({"subject": "x", "public_key": good, "extra": 1}, "unknown field(s): extra"),
        ([good], "must be a JSON object"),
    ):
        status, answer = call(gw, "POST", "/api/ssh-keys", admin, body_in)
        assert status == 400 and why in answer["error"], (body_in, answer)
    assert not [k for k in call(gw, "GET", "/api/ssh-keys", admin)[1] if k["subject"] == "x"]
    status, answer = call(gw, "DELETE", "/api/ssh-keys/SHA256:nope", admin)
    assert status == 404


def test_roles(gw: Gateway, keydir: Path) -> None:
    pub = (keydir / "id_d.pub").read_text()
    bob, eve = gw.token("bob", ["dev"]), gw.token(*EVE)
    for token in (bob, eve):
        status, body = call(gw, "POST", "/api/ssh-keys", token, {"subject": "bob", "public_key": pub})
        assert status == 403 and "gateway.admins" in body["error"]
        status, body = call(gw, "DELETE", "/api/ssh-keys/SHA256:x", token)
        assert status == 403
    status, body = call(gw, "GET", "/api/ssh-keys", bob)
    assert status == 403 and "gateway.auditors" in body["error"]
    for refused in (None, "garbage", expired_token(gw, ROOT)):
        for method, path in (
            ("GET", "/api/ssh-keys"),
            ("POST", "/api/ssh-keys"),
            ("POST", "/api/ssh/certificate"),
        ):
            status, body = call(gw, method, path, refused, {"subject": "bob", "public_key": pub})
            assert status == 401, (method, path, refused)
    res = cli(gw, "ssh-keys", "list", token=bob)
    assert res.returncode == 1 and "not allowed (403)" in res.stderr
    res = run(gw.cli("ssh-keys", "list"), env=gw.env, timeout=60)
    assert res.returncode == 1 and "no token" in res.stderr and "HOOPGW_TOKEN" in res.stderr


# --------------------------------------------------------------------------------------- certificates
def test_certificate_for_a_token_holder(gw: Gateway, keydir: Path, tmp_path: Path) -> None:
    pub = keydir / "id_e.pub"
    token = gw.token("alice", ["dev", "ops"])
    before = int(time.time())
    status, body = call(gw, "POST", "/api/ssh/certificate", token, {"public_key": pub.read_text()})
    after = int(time.time())
    assert status == 201, body
    ttl = load_config(gw.config_path).ssh.certificate_ttl
    assert set(body) == {
        "certificate",
        "fingerprint",
        "subject",
        "key_id",
        "serial",
        "valid_after",
        "valid_before",
    }
    assert body["subject"] == "alice" and body["fingerprint"] == keygen_fingerprint(pub)
    assert before + ttl <= body["valid_before"] <= after + ttl
    assert before - 61 <= body["valid_after"] <= after - 59
    cert = tmp_path / "id_e-cert.pub"
    cert.write_text(body["certificate"] + "\n")
    listing = cert_listing(cert)
    assert f'Key ID: "{body["key_id"]}"' in listing and "user certificate" in listing
    assert orjson.loads(body["key_id"].removeprefix("hoopgw:"))["groups"] == ["dev", "ops"]
    assert re.search(r"Principals: \n\s+alice\n", listing) and f"Serial: {int(body['serial'], 16)}" in listing

    [event] = [e for e in events(gw, "ssh_certificate_issued") if e["data"]["serial"] == body["serial"]]
    assert event["data"] == {
        "fingerprint": body["fingerprint"],
        "subject": "alice",
        "groups": ["dev", "ops"],
        "serial": body["serial"],
        "valid_before": body["valid_before"],
        "by": "user:alice",
    }

    # refused: an API key (even an admin's), a private key, garbage, a certificate, a bad body
    status, created = call(gw, "POST", "/api/keys", gw.token(*ROOT), {"name": "robot", "groups": ["dev"]})
    assert status == 201, created
    status, answer = call(gw, "POST", "/api/ssh/certificate", created["key"], {"public_key": pub.read_text()})
    assert status == 403 and "API key" in answer["error"]
    alice = gw.token("alice", ["dev", "ops"])
    for text, why in (
        ((keydir / "id_e").read_text(), "PRIVATE key"),
        ("ssh-ed25519 garbage", "not an OpenSSH public key"),
        (body["certificate"], "certificate, not a public key"),
        ("", "public_key is required"),
    ):
        status, answer = call(gw, "POST", "/api/ssh/certificate", alice, {"public_key": text})
        assert status == 400 and why in answer["error"], answer
    status, answer = call(
        gw, "POST", "/api/ssh/certificate", alice, {"public_key": pub.read_text(), "ttl": 9}
    )
    assert status == 400 and "unknown field(s): ttl" in answer["error"]
    # nothing private in the audit trail
    with AuditStore.open(gw.data_dir, create=False) as store:
        dump = orjson.dumps(store.events()).decode()
    assert "PRIVATE KEY" not in dump and created["key"] not in dump


def test_login_ssh_with_a_token(gw: Gateway, keydir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for name in ("id_ecdsa", "id_rsa"):  # no id_ed25519: the first that exists is id_ecdsa
        keygen(home / ".ssh" / name, "ecdsa" if name == "id_ecdsa" else "rsa")
    token = gw.token("alice", ["dev"])
    env = {"HOME": str(home), "HOOPGW_TOKEN": token, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = run(gw.cli("login", "--ssh"), env={**gw.env, **env}, timeout=60)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    cert = home / ".ssh" / "id_ecdsa-cert.pub"
    assert res.stdout == ""
    assert f"SSH certificate for alice written to {cert}, valid until " in res.stderr
    assert "ssh uses it with id_ecdsa" in res.stderr
    listing = cert_listing(cert)
    assert "ecdsa-sha2-nistp256-cert-v01@openssh.com user certificate" in listing
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert not (home / ".ssh" / "id_rsa-cert.pub").exists()

    # --key names the private or the .pub file; --token beats $HOOPGW_TOKEN; again replaces the file
    for key in (keydir / "id_a", keydir / "id_a.pub"):
        res = run(
            gw.cli("login", "--ssh", "--key", str(key), "--token", token, "--print-token"),
            env={**gw.env, "HOOPGW_TOKEN": "garbage"},
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout == token + "\n"
        assert "user certificate" in cert_listing(keydir / "id_a-cert.pub")

    # refusals with a reason
    res = run(gw.cli("login", "--ssh", "--key", str(tmp_path / "nokey")), env={**gw.env, **env}, timeout=60)
    assert res.returncode == 1 and "no public key" in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(gw.cli("login", "--ssh"), env={**gw.env, **env, "HOME": str(empty)}, timeout=60)
    assert res.returncode == 1 and "no SSH key in" in res.stderr and "ssh-keygen -t ed25519" in res.stderr
    res = run(gw.cli("login", "--ssh"), env={**gw.env, "HOME": str(home)}, timeout=60)
    assert res.returncode == 1 and 'identity.issuer is "local"' in res.stderr and "--token" in res.stderr
    res = run(
        gw.cli("login", "--ssh", "--token", expired_token(gw, ("alice", ("dev",)))),
        env={**gw.env, "HOME": str(home)},
        timeout=60,
    )
    assert res.returncode == 1 and "refused the token (401)" in res.stderr and "login --ssh" in res.stderr
    res = run(gw.cli("login", "--key", str(keydir / "id_a")), env=gw.env, timeout=60)
    assert res.returncode == 1 and "--key and --token go with --ssh" in res.stderr


def test_login_ssh_through_the_oidc_device_flow(
    gateway_factory: GatewayFactory, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    idp = Idp(tmp_path_factory.mktemp("idp"), interval=1).start()
    try:
        gw: Gateway = gateway_factory(identity={"issuer": idp.url, "audience": "hoopgw"})
        keygen(tmp_path / "id_ed25519")
        login = start_login(
            gw.config_path, tmp_path / "cache", "--ssh", "--key", str(tmp_path / "id_ed25519")
        )
        idp.control(
            "approve", user_code=login.user_code(), sub="alice", groups=["dev"], email="alice@example.com"
        )
        rc, out, err = login.finish()
        assert rc == 0, err + gw.log_tail()
        assert out == "" and "Logged in as alice" in err and "SSH certificate for alice written to" in err
        listing = cert_listing(tmp_path / "id_ed25519-cert.pub")
        key_id = re.search(r'Key ID: "hoopgw:(.*)"\n', listing)
        assert key_id is not None
        doc = orjson.loads(key_id.group(1))
        assert (doc["sub"], doc["groups"], doc["email"]) == ("alice", ["dev"], "alice@example.com")
        # a second run reuses the cached login (no new device flow)
        devices = idp.stats()["device"]
        res = run(
            gw.cli("login", "--ssh", "--key", str(tmp_path / "id_ed25519")),
            env={**gw.env, "XDG_CACHE_HOME": str(tmp_path / "cache")},
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert idp.stats()["device"] == devices
    finally:
        idp.stop()


def test_help(gw: Gateway) -> None:
    for args in (("ssh-keys", "--help"), ("ssh-keys", "add", "--help"), ("login", "--help")):
        res = run(gw.cli(*args), env=gw.env, timeout=60)
        assert res.returncode == 0 and "usage: hoopgw" in res.stdout, res.stderr
    assert "--ssh" in run(gw.cli("login", "--help"), env=gw.env, timeout=60).stdout
    assert require_binary("ssh-keygen")
