"""``hoopgw login``: an OIDC token through the device flow, cached for the user (0600) and reusable;
with ``--ssh``, also an SSH certificate for the user's key, signed by the gateway (``KEY-cert.pub``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import secrets
import stat
import sys
import time
from pathlib import Path

import jwt
import orjson

from hoopgw.cli._common import (
    TOKEN_ENV,
    CliError,
    Subparsers,
    duration,
    format_time,
    load,
    new_parser,
    printable,
)
from hoopgw.cli._keys import api_request
from hoopgw.config import Config, IdentityConfig
from hoopgw.errors import AuthError
from hoopgw.identity import IssuerKeys, OidcVerifier, Principal
from hoopgw.identity._device import pick_token, poll, start
from hoopgw.identity._http import new_client

_MAX_CACHE_BYTES = 64 * 1024
#: the keys ``login --ssh`` certifies when no ``--key`` is given: the first that exists
DEFAULT_SSH_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_MAX_PUB_BYTES = 16 * 1024


def register(subparsers: Subparsers) -> None:
    """Add ``login``."""
    parser = new_parser(
        subparsers,
        "login",
        "get a token from the OIDC issuer with the device-code flow (prompts on stderr; cached for reuse)",
    )
    parser.add_argument(
        "--print-token",
        action="store_true",
        help="print only the token on stdout, reusing a cached one that is still valid "
        "(PGPASSWORD=$(hoopgw login --print-token))",
    )
    parser.add_argument(
        "--timeout",
        type=duration,
        default=300.0,
        help="give up after this long without approval, like 90s or 5m (default 5m)",
    )
    parser.add_argument(
        "--ssh",
        action="store_true",
        help="also get an SSH certificate for your key, signed by the gateway and written next to it as "
        "KEY-cert.pub (ssh uses it automatically)",
    )
    parser.add_argument(
        "--key",
        metavar="PATH",
        type=Path,
        default=None,
        help="with --ssh: the key to certify, its private or .pub file "
        "(default: the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa)",
    )
    parser.add_argument(
        "--token",
        "-t",
        default=None,
        help=f"with --ssh: use this token instead of logging in (default: ${TOKEN_ENV}, then the cached "
        "login); needed with the local issuer",
    )
    parser.set_defaults(func=run_login)


def client_id(identity: IdentityConfig) -> str:
    """The OAuth client id ``hoopgw login`` uses (``identity.client_id``, default the audience)."""
    return identity.client_id or identity.audience


def cache_path(identity: IdentityConfig) -> Path:
    """``$XDG_CACHE_HOME/hoopgw/token-HASH.json`` (or under ``~/.cache``), one per issuer and client."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    digest = hashlib.sha256(f"{identity.issuer}\0{client_id(identity)}".encode()).hexdigest()[:20]
    return root / "hoopgw" / f"token-{digest}.json"


def cached_token(identity: IdentityConfig, now: float | None = None) -> str | None:
    """The cached token if it is ours, private, for this issuer and valid for more than the leeway."""
    path = cache_path(identity)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            return None  # someone else's file, or readable by others: do not trust it
        raw = f.read(_MAX_CACHE_BYTES + 1)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("issuer") != identity.issuer:
        return None
    if doc.get("client_id") != client_id(identity) or not isinstance(doc.get("token"), str):
        return None
    token: str = doc["token"]
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    current = time.time() if now is None else now
    if claims.get("iss") != identity.issuer or not isinstance(exp, int | float):
        return None
    return token if exp - current > identity.leeway else None


def _private_dir(folder: Path) -> None:
    """The cache directory must be a real directory of this user, readable by nobody else."""
    try:
        st = folder.lstat()
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise CliError(f"the token cache directory {folder} is not a directory of yours: not using it")
        if st.st_mode & 0o077:
            folder.chmod(0o700)
    except OSError as exc:
        raise CliError(f"cannot secure the token cache directory {folder}: {exc.strerror}") from None


def store_token(identity: IdentityConfig, token: str, expires_at: float | None) -> Path:
    """Write the cache file atomically with mode 0600 (directory 0700)."""
    path = cache_path(identity)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the token cache directory {path.parent}: {exc.strerror}") from None
    _private_dir(path.parent)
    doc = {
        "issuer": identity.issuer,
        "client_id": client_id(identity),
        "token": token,
        "expires_at": expires_at,
    }
    _write_atomically(path, orjson.dumps(doc), 0o600, "the token cache")
    return path


def _write_atomically(path: Path, data: bytes, mode: int, what: str) -> None:
    """Write ``path`` through a temporary file beside it (fsynced, then renamed over it)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write {what} {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def device_login(identity: IdentityConfig) -> tuple[str, Principal]:
    """Run the device flow; return the token and whom it names (checked as the gateway would)."""
    keys = IssuerKeys(
        identity.issuer, cache_ttl=identity.jwks_cache_ttl, refetch_interval=identity.jwks_refetch_interval
    )
    discovery = await keys.discover()
    cid = client_id(identity)
    async with new_client(identity.issuer) as client:
        grant = await start(client, discovery, cid, identity.scopes)
        _say(f"To log in, open {grant.verification_uri} and enter the code: {grant.user_code}")
        if grant.verification_uri_complete:
            _say(f"  (or open {grant.verification_uri_complete})")
        _say("Waiting for approval...")
        response = await poll(client, discovery, grant, cid)
    token = pick_token(response)
    try:
        principal = await OidcVerifier(identity, keys).verify(token)
    except AuthError as exc:
        raise CliError(f"the issuer's token would not be accepted by this gateway: {exc}") from None
    return token, principal


def run_login(args: argparse.Namespace) -> int:
    """Reuse a cached token (with --print-token) or run the device flow; cache and print the result."""
    config = load(args)
    identity = config.identity
    if args.ssh:
        return run_ssh_login(args, config)
    if args.key is not None or args.token is not None:
        raise CliError("--key and --token go with --ssh")
    if identity.issuer == "local":
        raise CliError(
            'identity.issuer is "local": there is no OIDC login; get a token with '
            "`hoopgw token issue --subject NAME` instead"
        )
    if args.print_token:
        token = cached_token(identity)
        if token is not None:
            sys.stdout.write(token + "\n")
            return 0
    timeout: float = args.timeout
    try:
        token, principal = asyncio.run(_login_within(identity, timeout))
    except TimeoutError:
        raise CliError(f"gave up after {timeout:g} s without an approved login (--timeout)") from None
    except AuthError as exc:
        raise CliError(f"login failed: {exc}") from None
    path = store_token(identity, token, principal.expires_at)
    if args.print_token:
        sys.stdout.write(token + "\n")
        return 0
    groups = ", ".join(sorted(principal.groups)) or "-"
    _say(
        f"Logged in as {principal.subject} (groups: {groups}); the token is valid until "
        f"{format_time(principal.expires_at)} UTC and cached in {path}"
    )
    return 0


async def _login_within(identity: IdentityConfig, limit_s: float) -> tuple[str, Principal]:
    async with asyncio.timeout(limit_s):
        return await device_login(identity)


def ssh_key_paths(key: Path | None, home: Path | None = None) -> tuple[Path, Path]:
    """``(public key file, certificate file)`` for ``--key`` (a private or ``.pub`` file), or for the first
    of ``~/.ssh/id_ed25519``, ``id_ecdsa``, ``id_rsa`` whose ``.pub`` exists."""
    if key is None:
        folder = (home or Path.home()) / ".ssh"
        for name in DEFAULT_SSH_KEYS:
            if (folder / f"{name}.pub").is_file():
                return folder / f"{name}.pub", folder / f"{name}-cert.pub"
        names = ", ".join(f"{name}.pub" for name in DEFAULT_SSH_KEYS)
        raise CliError(
            f"no SSH key in {folder} ({names}): make one with `ssh-keygen -t ed25519` or name it with --key"
        )
    base = key.with_name(key.name.removesuffix(".pub")) if key.name.endswith(".pub") else key
    pub = base.with_name(base.name + ".pub")
    if not pub.is_file():
        raise CliError(f"no public key {pub} next to {base} (--key names an SSH key or its .pub file)")
    return pub, base.with_name(base.name + "-cert.pub")


def _read_public_key(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            text = f.read(_MAX_PUB_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(text) > _MAX_PUB_BYTES or "PRIVATE KEY" in text:
        raise CliError(f"{path} is not an SSH public key file (it was not sent)")
    return text


def write_certificate(path: Path, certificate: str) -> None:
    """Write ``KEY-cert.pub`` atomically (mode 0644: a certificate is public, like the .pub file)."""
    _write_atomically(path, certificate.strip().encode("ascii") + b"\n", 0o644, "the certificate")


def _token_for_ssh(args: argparse.Namespace, identity: IdentityConfig) -> str:
    """``--token``, ``$HOOPGW_TOKEN``, the cached login, or a new device-flow login (then cached)."""
    given: str | None = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if given is not None and given.strip():
        return given.strip()
    if identity.issuer == "local":
        raise CliError(
            'identity.issuer is "local": there is no OIDC login; pass a token from '
            f"`hoopgw token issue --subject NAME` with --token or ${TOKEN_ENV}"
        )
    cached = cached_token(identity)
    if cached is not None:
        return cached
    timeout: float = args.timeout
    try:
        token, principal = asyncio.run(_login_within(identity, timeout))
    except TimeoutError:
        raise CliError(f"gave up after {timeout:g} s without an approved login (--timeout)") from None
    except AuthError as exc:
        raise CliError(f"login failed: {exc}") from None
    store_token(identity, token, principal.expires_at)
    _say(f"Logged in as {principal.subject}")
    return token


def run_ssh_login(args: argparse.Namespace, config: Config) -> int:
    """Get a token (:func:`_token_for_ssh`), have the gateway certify the SSH key, write the certificate."""
    pub, cert_path = ssh_key_paths(args.key)
    text = _read_public_key(pub)
    token = _token_for_ssh(args, config.identity)
    try:
        issued = api_request(config, token, "POST", "/api/ssh/certificate", {"public_key": text})
    except CliError as exc:
        if "(401)" in str(exc):
            raise CliError(
                "the gateway refused the token (401): it expired or is not for this gateway; "
                "run `hoopgw login --ssh` again"
            ) from None
        raise
    certificate = issued.get("certificate") if isinstance(issued, dict) else None
    if not isinstance(certificate, str) or "-cert-v01@openssh.com " not in certificate:
        raise CliError("the gateway's answer holds no SSH certificate")
    write_certificate(cert_path, certificate)
    if args.print_token:
        sys.stdout.write(token + "\n")
    _say(
        f"SSH certificate for {printable(issued.get('subject'), newlines=False)} written to {cert_path},"
        f" valid until {format_time(issued.get('valid_before'))} UTC; ssh uses it with {pub.name[:-4]}"
    )
    return 0
