"""A REAL OpenID provider for the tests: ``python -m tests._support.idp --port P`` (starlette + uvicorn).

It serves discovery, a JWKS with RS256, ES256 and EdDSA keys, the device authorization flow (RFC 8628) and
its token endpoint, all with real signatures, plus test-control endpoints under ``/control/``:

- ``POST /control/approve {"user_code", "sub", "groups", "email", "claims"}`` / ``deny`` / ``expire`` /
  ``slow_down`` (the next poll answers ``slow_down``) for a pending device code;
- ``POST /control/mint {"claims", "alg", "kid", "key": "published"|"rogue", "header"}``: a token with
  arbitrary claims (``null`` removes a default claim), signed by a published key, a key not in the JWKS,
  or nothing (``alg = "none"``);
- ``POST /control/rotate``: new keys with new kids; the old ones leave the JWKS;
- ``POST /control/jwks {"down": true}``: the JWKS answers 503 until ``{"down": false}``;
  ``POST /control/discovery {"down": bool, "issuer": str | null}``;
- ``GET /control/stats``: how often discovery and the JWKS were fetched.

The test side is :class:`Idp` (start/stop by PID, like the gateway under test).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .procs import REPO_ROOT, clean_env, free_port

__all__ = ["Idp", "Provider", "main"]

ALGS = ("RS256", "ES256", "EdDSA")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _generate(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _public_jwk(kid: str, alg: str, key: PrivateKey) -> dict[str, Any]:
    algo = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = algo.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": alg})
    return jwk


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    status: str = "pending"  # pending | approved | denied
    claims: dict[str, Any] = field(default_factory=dict)
    slow_down: bool = False


class Provider:
    """The provider's state and its starlette app."""

    def __init__(self, issuer: str, interval: int, device_ttl: int, token_ttl: int) -> None:
        self.issuer = issuer
        self.interval = interval
        self.device_ttl = device_ttl
        self.token_ttl = token_ttl
        self.keys: dict[str, tuple[str, PrivateKey]] = {}
        self.rogue: dict[str, PrivateKey] = {}
        self.generation = 0
        self.rotate()
        self.jwks_down = False
        self.discovery_down = False
        self.discovery_issuer: str | None = None
        self.stats = {"jwks": 0, "discovery": 0, "device": 0, "token": 0}
        self.codes: dict[str, DeviceCode] = {}
        routes = [
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/device", self.device, methods=["POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/activate", self.activate),
            Route("/control/approve", self.control_decide, methods=["POST"]),
            Route("/control/deny", self.control_decide, methods=["POST"]),
            Route("/control/expire", self.control_decide, methods=["POST"]),
            Route("/control/slow_down", self.control_decide, methods=["POST"]),
            Route("/control/mint", self.control_mint, methods=["POST"]),
            Route("/control/rotate", self.control_rotate, methods=["POST"]),
            Route("/control/jwks", self.control_jwks, methods=["POST"]),
            Route("/control/discovery", self.control_discovery, methods=["POST"]),
            Route("/control/stats", self.control_stats),
            Route("/control/keys", self.control_keys),
        ]
        self.app = Starlette(routes=routes)

    def rotate(self) -> dict[str, str]:
        """Replace every published key with a new one (new kid); return alg -> kid."""
        self.generation += 1
        self.keys = {f"{alg.lower()}-{self.generation}": (alg, _generate(alg)) for alg in ALGS}
        return {alg: kid for kid, (alg, _) in self.keys.items()}

    def sign(
        self, claims: dict[str, Any], alg: str, kid: str | None, which: str, header: dict[str, Any]
    ) -> str:
        if alg == "none":
            return jwt.encode(claims, None, algorithm="none", headers=header or None)  # type: ignore[arg-type]  # alg=none has no key; PyJWT's annotation wants one
        if which == "rogue":
            key = self.rogue.setdefault(alg, _generate(alg))
            kid = kid or f"{alg.lower()}-{self.generation}"  # a published kid, the wrong key
        else:
            if kid is None:
                kid = next(k for k, (a, _) in self.keys.items() if a == alg)
            key = self.keys[kid][1] if kid in self.keys else self.rogue.setdefault(alg, _generate(alg))
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, **header})

    def default_claims(self, aud: str | None) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + self.token_ttl,
            "jti": secrets.token_urlsafe(8),
        }

    # -- OIDC ------------------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        self.stats["discovery"] += 1
        if self.discovery_down:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse(
            {
                "issuer": self.discovery_issuer or self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "token_endpoint": f"{self.issuer}/token",
                "device_authorization_endpoint": f"{self.issuer}/device",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": list(ALGS),
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        self.stats["jwks"] += 1
        if self.jwks_down:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"keys": [_public_jwk(kid, alg, key) for kid, (alg, key) in self.keys.items()]})

    async def device(self, request: Request) -> Response:
        self.stats["device"] += 1
        form = await _form(request)
        client_id = form.get("client_id", "")
        if not client_id:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        code = DeviceCode(
            device_code=secrets.token_urlsafe(24),
            user_code=user_code,
            client_id=client_id,
            scope=form.get("scope", ""),
            expires_at=time.time() + self.device_ttl,
        )
        self.codes[code.device_code] = code
        return JSONResponse(
            {
                "device_code": code.device_code,
                "user_code": user_code,
                "verification_uri": f"{self.issuer}/activate",
                "verification_uri_complete": f"{self.issuer}/activate?user_code={user_code}",
                "expires_in": self.device_ttl,
                "interval": self.interval,
            }
        )

    async def activate(self, request: Request) -> Response:
        return Response("approve this device through /control/approve\n", media_type="text/plain")

    async def token(self, request: Request) -> Response:
        self.stats["token"] += 1
        form = await _form(request)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        code = self.codes.get(form.get("device_code", ""))
        if code is None or code.client_id != form.get("client_id"):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if time.time() > code.expires_at:
            return JSONResponse({"error": "expired_token"}, status_code=400)
        if code.slow_down:
            code.slow_down = False
            return JSONResponse({"error": "slow_down"}, status_code=400)
        if code.status == "denied":
            return JSONResponse(
                {"error": "access_denied", "error_description": "the user said no"}, status_code=400
            )
        if code.status == "pending":
            return JSONResponse({"error": "authorization_pending"}, status_code=400)
        del self.codes[code.device_code]
        claims = {**self.default_claims(code.client_id), **code.claims}
        id_token = self.sign(claims, "RS256", None, "published", {})
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "id_token": id_token,
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
            }
        )

    # -- control ---------------------------------------------------------------------------------
    async def control_decide(self, request: Request) -> Response:
        body = await request.json()
        action = request.url.path.rsplit("/", 1)[-1]
        code = next((c for c in self.codes.values() if c.user_code == body.get("user_code")), None)
        if code is None:
            return JSONResponse({"error": "no such user code"}, status_code=404)
        if action == "approve":
            code.status = "approved"
            code.claims = {"sub": body["sub"], "groups": body.get("groups", [])}
            if body.get("email"):
                code.claims["email"] = body["email"]
            code.claims.update(body.get("claims") or {})
        elif action == "deny":
            code.status = "denied"
        elif action == "expire":
            code.expires_at = 0.0
        else:
            code.slow_down = True
        return JSONResponse({"ok": True})

    async def control_mint(self, request: Request) -> Response:
        body = await request.json()
        claims = self.default_claims(body.get("aud", "hoopgw"))
        claims.update(body.get("claims") or {})
        claims = {k: v for k, v in claims.items() if v is not None}
        token = self.sign(
            claims,
            body.get("alg", "RS256"),
            body.get("kid"),
            body.get("key", "published"),
            body.get("header", {}),
        )
        return JSONResponse({"token": token})

    async def control_rotate(self, request: Request) -> Response:
        return JSONResponse(self.rotate())

    async def control_jwks(self, request: Request) -> Response:
        self.jwks_down = bool((await request.json())["down"])
        return JSONResponse({"ok": True})

    async def control_discovery(self, request: Request) -> Response:
        body = await request.json()
        self.discovery_down = bool(body.get("down", False))
        self.discovery_issuer = body.get("issuer")
        return JSONResponse({"ok": True})

    async def control_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats)

    async def control_keys(self, request: Request) -> Response:
        """Public keys as PEM by kid (for the HS256 key-confusion test)."""
        from cryptography.hazmat.primitives import serialization

        pems = {
            kid: key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
            for kid, (_, key) in self.keys.items()
        }
        return JSONResponse(pems)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded body (starlette's own form parser needs python-multipart, not a dependency)."""
    body = (await request.body()).decode()
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def main(argv: list[str] | None = None) -> None:
    """Run the provider until SIGTERM."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests._support.idp")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=int, default=1, help="device flow poll interval (s)")
    parser.add_argument("--device-ttl", type=int, default=600)
    parser.add_argument("--token-ttl", type=int, default=600)
    args = parser.parse_args(argv)
    provider = Provider(f"http://127.0.0.1:{args.port}", args.interval, args.device_ttl, args.token_ttl)
    uvicorn.run(provider.app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


# ---------------------------------------------------------------------------------------------- test side
class Idp:
    """The provider as a child process; ``url`` is its issuer (``http://127.0.0.1:PORT``)."""

    def __init__(
        self, workdir: Path, *, interval: int = 1, device_ttl: int = 600, token_ttl: int = 600
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"idp-{self.port}.log"
        self.args = [
            "--interval",
            str(interval),
            "--device-ttl",
            str(device_ttl),
            "--token-ttl",
            str(token_ttl),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def start(self, timeout: float = 20.0) -> Idp:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests._support.idp", "--port", str(self.port), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"idp exited with {self.proc.returncode}:\n{self.log_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/control/stats").status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"idp not ready after {timeout} s:\n{self.log_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        self.http.close()
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10.0)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def control(self, action: str, **body: Any) -> Any:
        res = self.http.post(f"/control/{action}", json=body)
        assert res.status_code == 200, f"/control/{action}: {res.status_code} {res.text}"
        return res.json()

    def mint(
        self,
        aud: str | list[str] | None = "hoopgw",
        *,
        alg: str = "RS256",
        kid: str | None = None,
        key: str = "published",
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token with default claims (iss, aud, iat, nbf, exp, jti) set by ``claims`` (None: drop)."""
        body = {"aud": aud, "alg": alg, "kid": kid, "key": key, "header": header or {}, "claims": claims}
        token: str = self.control("mint", **body)["token"]
        return token

    def stats(self) -> dict[str, int]:
        res = self.http.get("/control/stats")
        data: dict[str, int] = res.json()
        return data

    def public_pems(self) -> dict[str, str]:
        data: dict[str, str] = self.http.get("/control/keys").json()
        return data


if __name__ == "__main__":
    main()
