"""OIDC tokens against real providers: the in-repo idp process, and the third-party oidc-provider-mock.

Unit level: an OidcVerifier talks to the idp child process over HTTP (discovery, JWKS, rotation, outages).
End to end: a real gateway with ``identity.issuer`` set to the provider, real psql/asyncpg over TLS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from hoopgw.config import IdentityConfig, load_config
from hoopgw.errors import AuthError, TokenError
from hoopgw.identity import Authenticator, LocalIssuer, OidcVerifier, Principal

from ._support.gateway import Gateway
from ._support.idp import Idp
from ._support.procs import REPO_ROOT, clean_env, free_port, wait_until

GatewayFactory = Any
POLICY = {"policy": [{"name": "all", "subjects": ["group:dev"], "connections": ["*"], "allow": ["*"]}]}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    """One provider for the tests that do not change its keys or availability."""
    provider = Idp(tmp_path_factory.mktemp("idp")).start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def fresh_idp(tmp_path: Path) -> Iterator[Idp]:
    """A provider of one's own (rotation, outages, hit counts)."""
    provider = Idp(tmp_path / "idp").start()
    try:
        yield provider
    finally:
        provider.stop()


def verifier(idp: Idp, **identity: Any) -> OidcVerifier:
    return OidcVerifier(IdentityConfig(issuer=idp.url, audience="hoopgw", **identity))


def verify(v: OidcVerifier, *tokens: str) -> list[Principal]:
    """Verify ``tokens`` in order in one event loop (the verifier's cache lives across them)."""

    async def go() -> list[Principal]:
        return [await v.verify(t) for t in tokens]

    return asyncio.run(go())


def refused(v: OidcVerifier, token: str, reason: str, kind: type[AuthError] = TokenError) -> str:
    with pytest.raises(AuthError, match=reason) as info:
        verify(v, token)
    assert type(info.value) is kind, info.value
    message = str(info.value)
    signature = token.split(".")[-1]
    assert token not in message and (not signature or signature not in message)
    return message


def hs256_with_public_key(idp: Idp) -> str:
    """The classic key-confusion forgery: HS256 keyed with the issuer's public RSA key."""
    kid, pem = next((k, v) for k, v in idp.public_pems().items() if k.startswith("rs256"))
    now = int(time.time())

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(
        json.dumps(
            {"iss": idp.url, "aud": "hoopgw", "sub": "mallory", "groups": ["dev"], "exp": now + 600}
        ).encode()
    )
    sig = hmac.new(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


# ------------------------------------------------------------------------------------------ verifier
@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_good_tokens(idp: Idp, alg: str) -> None:
    token = idp.mint(alg=alg, sub="alice", groups=["dev", "dba"], email="alice@example.com", jti="j-1")
    [p] = verify(verifier(idp), token)
    assert (p.subject, p.groups, p.auth, p.email, p.token_id) == (
        "alice",
        frozenset({"dev", "dba"}),
        "token",
        "alice@example.com",
        "j-1",
    )
    assert p.expires_at is not None and abs(p.expires_at - (time.time() + 600)) < 30
    assert p.matches("group:dev") and p.matches("user:alice")


def test_refused_tokens(idp: Idp) -> None:
    v = verifier(idp)
    now = int(time.time())
    good = idp.mint(sub="alice")
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["groups"] = ["admin"]
    evil = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    cases = {
        "signed by a key not in the JWKS": (idp.mint(key="rogue", sub="m"), "signature is invalid"),
        "payload changed": (f"{head}.{evil}.{sig}", "signature is invalid"),
        "ES256 by a rogue key": (idp.mint(alg="ES256", key="rogue", sub="m"), "signature is invalid"),
        "EdDSA by a rogue key": (idp.mint(alg="EdDSA", key="rogue", sub="m"), "signature is invalid"),
        "other issuer": (idp.mint(sub="m", iss="https://evil.example"), "not issued by"),
        "no issuer": (idp.mint(sub="m", iss=None), "lacks the 'iss' claim"),
        "wrong audience": (idp.mint(aud="someone-else", sub="m"), "audience is not 'hoopgw'"),
        "no audience": (idp.mint(sub="m", aud=None), "lacks the 'aud' claim"),
        "expired": (idp.mint(sub="m", exp=now - 31 - 5, iat=now - 900, nbf=now - 900), "has expired"),
        "not yet valid": (idp.mint(sub="m", nbf=now + 120), "not yet valid"),
        "no expiry": (idp.mint(sub="m", exp=None), "lacks the 'exp' claim"),
        "no subject": (idp.mint(groups=["dev"]), "no 'sub' claim"),
        "alg none": (idp.mint(alg="none", sub="m"), "algorithm 'none' is not accepted"),
        "HS256 keyed with the public key": (hs256_with_public_key(idp), "algorithm 'HS256' is not accepted"),
        "alg does not fit the key": (
            idp.mint(alg="ES256", key="rogue", kid="rs256-1", sub="m"),
            "does not match the issuer's key 'rs256-1'",
        ),
        "groups of the wrong type": (idp.mint(sub="m", groups=7), "'groups' claim is not a string or a list"),
        "garbage": ("eyJhbGciOiJSUzI1NiJ9.!!!.###", "malformed"),
        "several audiences, issued to another client": (
            idp.mint(sub="m", aud=["other", "hoopgw"], azp="other"),
            "several audiences",
        ),
        "several audiences, no azp": (idp.mint(sub="m", aud=["other", "hoopgw"]), "several audiences"),
        "exp as a string": (idp.mint(sub="m", exp=str(now + 600)), "'exp'"),
    }
    for name, (token, reason) in cases.items():
        try:
            refused(v, token, reason)
        except BaseException as exc:
            raise AssertionError(f"case {name!r}: {exc}") from exc


def test_too_long_token_refused_without_fetching(fresh_idp: Idp) -> None:
    big = fresh_idp.mint(sub="m", blob="x" * (17 * 1024))
    refused(verifier(fresh_idp), big, "token is too long")
    # Tokens of another issuer do not make the gateway fetch keys either.
    refused(verifier(fresh_idp), fresh_idp.mint(sub="m", iss="https://x.example"), "not issued by")
    assert fresh_idp.stats()["jwks"] == 0 and fresh_idp.stats()["discovery"] == 0


def test_required_claims_pin_the_tenant(idp: Idp) -> None:
    pinned = verifier(idp, required_claims={"tid": "bank-tenant", "hd": ["bank.example", "bank.test"]})
    [p] = verify(pinned, idp.mint(sub="a", tid="bank-tenant", hd="bank.test"))
    assert p.subject == "a"
    refused(pinned, idp.mint(sub="a", tid="other-tenant", hd="bank.test"), "'tid' claim is not one")
    refused(pinned, idp.mint(sub="a", hd="bank.test"), "'tid' claim is not one")
    refused(pinned, idp.mint(sub="a", tid="bank-tenant", hd="evil.example"), "'hd' claim is not one")


def test_several_audiences_need_us_as_authorized_party(idp: Idp) -> None:
    [p] = verify(verifier(idp), idp.mint(sub="a", aud=["other", "hoopgw"], azp="hoopgw"))
    assert p.subject == "a"


def test_leeway(idp: Idp) -> None:
    now = int(time.time())
    recently_expired = idp.mint(sub="a", exp=now - 10, iat=now - 600, nbf=now - 600)
    almost_valid = idp.mint(sub="a", nbf=now + 20, iat=now)
    assert [p.subject for p in verify(verifier(idp), recently_expired, almost_valid)] == ["a", "a"]
    strict = verifier(idp, leeway=1)
    refused(strict, recently_expired, "has expired")
    refused(strict, almost_valid, "not yet valid")
    lax = verifier(idp, leeway=300)
    assert verify(lax, idp.mint(sub="a", exp=now - 200, iat=now - 900, nbf=now - 900))[0].subject == "a"


def test_algorithms_setting(idp: Idp) -> None:
    only_es = verifier(idp, algorithms=("ES256",))
    assert verify(only_es, idp.mint(alg="ES256", sub="a"))[0].subject == "a"
    refused(
        only_es, idp.mint(alg="RS256", sub="a"), r"algorithm 'RS256' is not accepted \(identity.algorithms"
    )


def test_claims_settings(idp: Idp) -> None:
    [p] = verify(verifier(idp), idp.mint(sub="a", groups="dev"))
    assert p.groups == frozenset({"dev"}) and p.email is None
    [p] = verify(verifier(idp), idp.mint(sub="a"))
    assert p.groups == frozenset()
    custom = verifier(idp, groups_claim="roles", email_claim="mail", subject_claim="preferred_username")
    [p] = verify(
        custom,
        idp.mint(sub="u-123", preferred_username="bob", roles=["dba"], groups=["x"], mail="bob@example.com"),
    )
    assert (p.subject, p.groups, p.email) == ("bob", frozenset({"dba"}), "bob@example.com")
    refused(custom, idp.mint(sub="u-123", roles=["dba"]), "no 'preferred_username' claim")
    nested = verifier(idp, groups_claim="realm_access.roles", email_claim=None)
    [p] = verify(nested, idp.mint(sub="a", realm_access={"roles": ["dev", "ops"]}, email="a@example.com"))
    assert p.groups == frozenset({"dev", "ops"}) and p.email is None
    refused(nested, idp.mint(sub="a", realm_access={"roles": [1]}), "not a string or a list of strings")


def test_rotation_refetches_once(fresh_idp: Idp) -> None:
    idp = fresh_idp
    v = verifier(idp, jwks_refetch_interval=60)
    before = idp.mint(sub="a")

    async def scenario() -> None:
        assert (await v.verify(before)).subject == "a"
        assert idp.stats()["jwks"] == 1
        kids = idp.control("rotate")
        assert kids["RS256"] == "rs256-2"
        after = idp.mint(sub="b")
        assert (await v.verify(after)).subject == "b"  # unknown kid: one refetch, then it verifies
        assert (await v.verify(idp.mint(alg="ES256", sub="c"))).subject == "c"  # already in the new set
        assert idp.stats()["jwks"] == 2
        with pytest.raises(TokenError, match=r"key the issuer does not publish \(kid 'rs256-1'\)"):
            await v.verify(before)  # its key left the JWKS
        assert idp.stats()["jwks"] == 2

    asyncio.run(scenario())


def test_unknown_kid_refetch_is_rate_limited(fresh_idp: Idp) -> None:
    idp = fresh_idp
    v = verifier(idp, jwks_refetch_interval=1)
    unknown = [idp.mint(key="rogue", kid=f"nope-{i}", sub="m") for i in range(6)]

    async def scenario() -> None:
        assert (await v.verify(idp.mint(sub="a"))).subject == "a"
        assert idp.stats()["jwks"] == 1
        for token in unknown:
            with pytest.raises(TokenError, match="does not publish"):
                await v.verify(token)
        assert idp.stats()["jwks"] == 2  # one refetch for six unknown kids
        results = await asyncio.gather(*(v.verify(t) for t in unknown), return_exceptions=True)
        assert all(isinstance(r, TokenError) for r in results)
        assert idp.stats()["jwks"] == 2
        await asyncio.sleep(1.1)
        with pytest.raises(TokenError, match="does not publish"):
            await v.verify(unknown[0])
        assert idp.stats()["jwks"] == 3  # the interval passed: one more

    asyncio.run(scenario())


def test_concurrent_first_logins_share_one_fetch(fresh_idp: Idp) -> None:
    v = verifier(fresh_idp)
    tokens = [fresh_idp.mint(alg=alg, sub=f"u{i}") for i in range(5) for alg in ("RS256", "ES256", "EdDSA")]

    async def scenario() -> list[Principal]:
        return await asyncio.gather(*(v.verify(t) for t in tokens))

    assert len(asyncio.run(scenario())) == 15
    assert fresh_idp.stats() == {"jwks": 1, "discovery": 1, "device": 0, "token": 0}


def test_cache_ttl(fresh_idp: Idp) -> None:
    v = verifier(fresh_idp, jwks_cache_ttl=1, jwks_refetch_interval=0.5)

    async def scenario() -> None:
        await v.verify(fresh_idp.mint(sub="a"))
        await v.verify(fresh_idp.mint(sub="a"))
        assert fresh_idp.stats()["jwks"] == 1
        await asyncio.sleep(1.2)
        await v.verify(fresh_idp.mint(sub="a"))
        assert fresh_idp.stats()["jwks"] == 2

    asyncio.run(scenario())


def test_jwks_down(fresh_idp: Idp) -> None:
    idp = fresh_idp
    v = verifier(idp, jwks_refetch_interval=0.5, jwks_cache_ttl=1)
    cached_kid = idp.mint(alg="ES256", sub="a")
    unknown = idp.mint(key="rogue", kid="new-key", sub="a")

    async def scenario() -> None:
        assert (await v.verify(cached_kid)).subject == "a"
        idp.control("jwks", down=True)
        assert (await v.verify(idp.mint(alg="EdDSA", sub="b"))).subject == "b"  # kid cached
        with pytest.raises(AuthError) as info:
            await v.verify(unknown)
        assert type(info.value) is AuthError
        assert f"cannot fetch the issuer's keys from {idp.url}/jwks: HTTP 503" in str(info.value)
        # Past the cache TTL the keys are stale, but while the endpoint is down they stay in use.
        await asyncio.sleep(1.2)
        assert (await v.verify(idp.mint(alg="RS256", sub="c"))).subject == "c"
        # A verifier with nothing cached has nothing to go on.
        with pytest.raises(AuthError, match=f"cannot fetch the issuer's keys from {idp.url}/jwks: HTTP 503"):
            await verifier(idp).verify(cached_kid)
        idp.control("jwks", down=False)
        await asyncio.sleep(0.6)
        with pytest.raises(TokenError, match="does not publish"):
            await v.verify(unknown)  # the endpoint is back: a real answer, not an outage

    asyncio.run(scenario())


def test_discovery_failure_is_retried_lazily(fresh_idp: Idp) -> None:
    idp = fresh_idp
    idp.control("discovery", down=True)
    v = verifier(idp, jwks_refetch_interval=0.5)
    token = idp.mint(sub="a")

    async def scenario() -> None:
        await v.warm_up()  # failure is only logged
        assert idp.stats()["discovery"] == 1
        for _ in range(3):
            with pytest.raises(
                AuthError, match=r"cannot fetch the issuer's discovery document from .*: HTTP 503"
            ):
                await v.verify(token)
        assert idp.stats()["discovery"] == 1  # rate-limited
        idp.control("discovery", down=False)
        await asyncio.sleep(0.6)
        assert (await v.verify(token)).subject == "a"
        assert idp.stats()["discovery"] == 2

    asyncio.run(scenario())


def test_discovery_must_name_the_configured_issuer(fresh_idp: Idp) -> None:
    fresh_idp.control("discovery", issuer="https://impostor.example")
    message = refused(
        verifier(fresh_idp), fresh_idp.mint(sub="a"), "names the issuer 'https://impostor.example'", AuthError
    )
    assert fresh_idp.url in message


def test_unreachable_issuer_fails_fast() -> None:
    v = OidcVerifier(IdentityConfig(issuer=f"http://127.0.0.1:{free_port()}", audience="hoopgw"))
    started = time.monotonic()
    refused(v, _unsigned(v.issuer), "connection refused", AuthError)
    assert time.monotonic() - started < 6


def _unsigned(issuer: str) -> str:
    """An RS256-headed token of ``issuer`` with a junk signature (enough to reach the key fetch)."""

    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'RS256', 'kid': 'k'})}.{b64({'iss': issuer, 'sub': 'x'})}.c2ln"


def test_authenticator_from_config(idp: Idp, tmp_path: Path) -> None:
    path = tmp_path / "hoopgw.toml"
    path.write_text(f'[gateway]\ndata_dir = "d"\n[identity]\nissuer = "{idp.url}"\naudience = "hoopgw"\n')
    config = load_config(path)
    auth = Authenticator.from_config(config)

    async def scenario() -> None:
        await auth.warm_up()
        got = await auth.authenticate(idp.mint(sub="alice", groups=["dev"]))
        assert (got.subject, got.groups, got.auth) == ("alice", frozenset({"dev"}), "token")
        local = LocalIssuer(config.gateway.data_dir, "hoopgw").issue("alice", ["dev"], 60)
        with pytest.raises(TokenError, match="not issued by"):
            await auth.authenticate(local)  # the local issuer is off when an OIDC issuer is configured

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------ end to end
def _audit_bytes(gw: Gateway) -> bytes:
    return b"".join(p.read_bytes() for p in gw.data_dir.glob("audit.db*"))


def _sessions(gw: Gateway) -> list[dict[str, Any]]:
    res = gw.run_cli("sessions", "list", "--json")
    assert res.returncode == 0, res.stderr
    data: list[dict[str, Any]] = json.loads(res.stdout)
    return data


async def _asyncpg_refusal(gw: Gateway, password: str) -> asyncpg.PostgresError:
    try:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=gw.port(),
            user="alice",
            password=password,
            database="bank",
            ssl="require",
            timeout=10,
        )
    except asyncpg.PostgresError as exc:
        await asyncio.sleep(0.2)  # let asyncpg finish closing its (TLS) transport before the loop ends
        return exc
    await conn.close()
    raise AssertionError("the gateway accepted a bad token")


def test_gateway_accepts_oidc_tokens_and_refuses_bad_ones(gateway_factory: GatewayFactory, idp: Idp) -> None:
    gw: Gateway = gateway_factory(identity={"issuer": idp.url, "audience": "hoopgw"}, extra=POLICY)
    token = idp.mint(sub="alice", groups=["dev"], email="alice@example.com")
    res = gw.psql("SELECT current_user, current_database();", password=token)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout.strip() == "app|bank"
    [session] = [s for s in _sessions(gw) if s["subject"] == "alice"]
    assert session["auth"] == "token" and "dev" in session["groups"]

    now = int(time.time())
    bad = {
        "has expired": idp.mint(sub="alice", groups=["dev"], exp=now - 300, iat=now - 900, nbf=now - 900),
        "audience is not 'hoopgw'": idp.mint(aud="other", sub="alice", groups=["dev"]),
        "signature is invalid": idp.mint(key="rogue", sub="alice", groups=["dev"]),
        "algorithm 'none' is not accepted": idp.mint(alg="none", sub="alice", groups=["dev"]),
    }
    for reason, bad_token in bad.items():
        err = asyncio.run(_asyncpg_refusal(gw, bad_token))
        assert err.sqlstate == "28P01", err
        assert reason in str(err.detail), (reason, err.detail)
        res = gw.psql("SELECT 1;", password=bad_token)
        assert res.returncode != 0 and reason in res.stderr
    # The gateway keeps serving, and no token (good or bad) is in its log or the audit store.
    assert gw.psql("SELECT 1;", password=token).stdout.strip() == "1"
    gw.stop()
    log, audit = gw.log_text(), _audit_bytes(gw)
    assert audit
    for t in [token, *bad.values()]:
        signature = t.split(".")[2]
        assert t not in log and t.encode() not in audit
        assert not signature or (signature not in log and signature.encode() not in audit)


def test_gateway_starts_while_the_issuer_is_down(gateway_factory: GatewayFactory, fresh_idp: Idp) -> None:
    fresh_idp.control("discovery", down=True)
    gw: Gateway = gateway_factory(
        identity={"issuer": fresh_idp.url, "audience": "hoopgw", "jwks_refetch_interval": 1}, extra=POLICY
    )
    wait_until(lambda: fresh_idp.stats()["discovery"] >= 1, timeout=10, what="the start-up discovery attempt")
    token = fresh_idp.mint(sub="alice", groups=["dev"])
    res = gw.psql("SELECT 1;", password=token)
    assert res.returncode != 0
    assert f"cannot fetch the issuer's discovery document from {fresh_idp.url}" in res.stderr
    fresh_idp.control("discovery", down=False)
    time.sleep(1.1)
    res = gw.psql("SELECT 1;", password=token)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert gw.running


# ------------------------------------------------------------------------------ oidc-provider-mock
@pytest.fixture
def mock_provider(tmp_path: Path) -> Iterator[str]:
    """oidc-provider-mock (Flask + authlib) as a child process; yields its issuer URL."""
    port = free_port()
    user = {"sub": "carol", "groups": ["dev"], "email": "carol@example.com"}
    log_path = tmp_path / "oidc-provider-mock.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oidc_provider_mock",
                "--port",
                str(port),
                "--user-claims",
                json.dumps(user),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{url}/.well-known/openid-configuration", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, what="oidc-provider-mock")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _authorization_code_flow(issuer: str, client_id: str, subject: str) -> str:
    """Drive the provider's authorization-code flow like a browser would; return the id_token."""
    redirect = "http://127.0.0.1/callback"
    with httpx.Client(base_url=issuer, timeout=10, trust_env=False) as http:
        config = http.get("/.well-known/openid-configuration").json()
        assert config["issuer"] == issuer
        params = {
            "client_id": client_id,
            "redirect_uri": redirect,
            "response_type": "code",
            "scope": "openid email",
            "state": "st-1",
        }
        consent = http.post(config["authorization_endpoint"], params=params, data={"sub": subject})
        assert consent.status_code == 302, consent.text
        query = parse_qs(urlsplit(consent.headers["location"]).query)
        assert query["state"] == ["st-1"]
        answer = http.post(
            config["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect,
                "client_id": client_id,
                "client_secret": "anything",
            },
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["id_token"]
        return token


def test_oidc_provider_mock_token_opens_a_session(
    gateway_factory: GatewayFactory, mock_provider: str
) -> None:
    id_token = _authorization_code_flow(mock_provider, "hoopgw", "carol")
    [p] = verify(OidcVerifier(IdentityConfig(issuer=mock_provider, audience="hoopgw")), id_token)
    assert (p.subject, p.groups, p.email) == ("carol", frozenset({"dev"}), "carol@example.com")

    gw: Gateway = gateway_factory(identity={"issuer": mock_provider, "audience": "hoopgw"}, extra=POLICY)
    res = gw.psql("SELECT current_user;", user="carol", password=id_token)
    assert res.returncode == 0, res.stderr + gw.log_tail()
    assert res.stdout.strip() == "app"
    assert any(s["subject"] == "carol" for s in _sessions(gw))
    # A token the provider issued for another client is not for this gateway.
    other = _authorization_code_flow(mock_provider, "some-other-app", "carol")
    res = gw.psql("SELECT 1;", user="carol", password=other)
    assert res.returncode != 0 and "audience is not 'hoopgw'" in res.stderr
