"""Local issuer tokens: good ones pass; every kind of bad one fails with a reason, never echoing it."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoopgw.config import load_config
from hoopgw.errors import AuthError, TokenError
from hoopgw.identity import KEY_FILE, LOCAL_ISSUER, Authenticator, LocalIssuer, Principal


@pytest.fixture
def issuer(tmp_path: Path) -> LocalIssuer:
    return LocalIssuer(tmp_path / "data", "hoopgw")


def forge(issuer: LocalIssuer, key: Ed25519PrivateKey | None = None, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": LOCAL_ISSUER,
        "aud": "hoopgw",
        "sub": "mallory",
        "groups": ["dba"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "abc",
    }
    claims.update(overrides)
    signing_key = key if key is not None else issuer._private_key()[0]
    return jwt.encode(claims, signing_key, algorithm="EdDSA", headers={"kid": issuer.kid})


def rejects(issuer: LocalIssuer, token: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason) as info:
        issuer.verify(token)
    assert token not in str(info.value)
    signature = token.split(".")[-1]
    assert not signature or signature not in str(info.value)


def test_issue_and_verify(issuer: LocalIssuer) -> None:
    token = issuer.issue("alice", ["dba", "ai-agents"], 3600)
    principal = issuer.verify(token)
    assert principal.subject == "alice"
    assert principal.groups == frozenset({"dba", "ai-agents"})
    assert principal.auth == "token"
    assert principal.expires_at is not None and abs(principal.expires_at - (time.time() + 3600)) < 5
    assert principal.token_id
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == issuer.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "hoopgw-local" and claims["aud"] == "hoopgw"
    assert claims["groups"] == ["ai-agents", "dba"]
    assert {"iat", "nbf", "exp", "jti"} <= claims.keys()


def test_key_file_created_private_and_reused(issuer: LocalIssuer) -> None:
    token = issuer.issue("alice", [], 60)
    key_path = issuer.data_dir / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    again = LocalIssuer(issuer.data_dir, "hoopgw")
    assert again.verify(token).subject == "alice"
    assert [p.name for p in issuer.data_dir.iterdir()] == [KEY_FILE]  # no temp files left


def test_token_size_limit(issuer: LocalIssuer) -> None:
    token = issuer.issue("alice@example.com", ["dba", "ai-agents", "platform", "audit"], 7 * 86400)
    assert len(token.encode()) < 512
    with pytest.raises(ValueError, match="512"):
        issuer.issue("a" * 300, ["g" * 100], 60)


def test_expired(issuer: LocalIssuer) -> None:
    now = int(time.time())
    rejects(issuer, forge(issuer, exp=now - 31, iat=now - 100, nbf=now - 100), "expired")
    # within the 30 s leeway still passes
    assert issuer.verify(forge(issuer, exp=now - 10, iat=now - 100, nbf=now - 100)).subject == "mallory"


def test_not_yet_valid(issuer: LocalIssuer) -> None:
    now = int(time.time())
    rejects(issuer, forge(issuer, nbf=now + 120, iat=now), "not yet valid")


def test_wrong_audience(issuer: LocalIssuer) -> None:
    rejects(issuer, forge(issuer, aud="someone-else"), "audience")
    other = LocalIssuer(issuer.data_dir, "other-gateway")
    with pytest.raises(TokenError, match="audience"):
        other.verify(issuer.issue("alice", [], 60))


def test_wrong_issuer(issuer: LocalIssuer) -> None:
    rejects(issuer, forge(issuer, iss="https://evil.example.com"), "not issued by")


def test_tampered_signature(issuer: LocalIssuer) -> None:
    token = issuer.issue("alice", ["dba"], 60)
    head, body, sig = token.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    rejects(issuer, f"{head}.{body}.{flipped}", "signature is invalid")
    # a changed payload under the old signature
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["groups"] = ["admin"]
    evil = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    rejects(issuer, f"{head}.{evil}.{sig}", "signature is invalid")


def test_alg_none(issuer: LocalIssuer) -> None:
    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "aud": "hoopgw",
        "sub": "x",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j",
    }
    token = jwt.encode(claims, "", algorithm="none")
    rejects(issuer, token, "algorithm 'none' is not accepted")


def test_other_algorithm(issuer: LocalIssuer) -> None:
    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "aud": "hoopgw",
        "sub": "x",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j",
    }
    token = jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!!", algorithm="HS256")
    rejects(issuer, token, "algorithm 'HS256' is not accepted")


def test_other_key(issuer: LocalIssuer) -> None:
    rejects(issuer, forge(issuer, key=Ed25519PrivateKey.generate()), "signature is invalid")
    other = LocalIssuer(issuer.data_dir.parent / "elsewhere", "hoopgw")
    rejects(issuer, other.issue("alice", [], 60), "unknown key")


@pytest.mark.parametrize(
    "garbage", ["", "abc", "a.b.c", "eyJ.eyJ.x", "eyJhbGciOiJFZERTQSJ9.!!!.###", "x" * 5000]
)
def test_garbage(issuer: LocalIssuer, garbage: str) -> None:
    with pytest.raises(TokenError) as info:
        issuer.verify(garbage)
    assert garbage not in str(info.value) or not garbage


def test_missing_claims(issuer: LocalIssuer) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": LOCAL_ISSUER, "aud": "hoopgw", "sub": "x", "exp": now + 60},
        issuer._private_key()[0],
        algorithm="EdDSA",
    )
    rejects(issuer, token, "lacks")
    rejects(issuer, forge(issuer, groups="dba"), "groups")


def test_authenticator(tmp_path: Path) -> None:
    path = tmp_path / "hoopgw.toml"
    path.write_text('[gateway]\ndata_dir = "d"\n[identity]\naudience = "bank-gw"\n')
    config = load_config(path)
    auth = Authenticator.from_config(config)
    token = LocalIssuer(config.gateway.data_dir, "bank-gw").issue("alice", ["dba"], 60)
    got = asyncio.run(auth.authenticate(token))
    assert (got.subject, got.groups, got.auth) == ("alice", frozenset({"dba"}), "token")
    assert got.expires_at is not None and got.token_id
    with pytest.raises(AuthError, match="not recognised"):
        asyncio.run(auth.authenticate("plain-password"))
    with pytest.raises(AuthError, match="no credential"):
        asyncio.run(auth.authenticate(""))
    with pytest.raises(TokenError):
        asyncio.run(auth.authenticate(LocalIssuer(config.gateway.data_dir, "other").issue("alice", [], 60)))


def test_principal_matches() -> None:
    p = Principal("alice", frozenset({"dba"}), "token")
    assert p.matches("group:dba") and p.matches("user:alice")
    assert not p.matches("group:audit") and not p.matches("key:alice") and not p.matches("alice")
