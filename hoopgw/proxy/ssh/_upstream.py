"""The gateway's SSH connection to the target host: brokered credential, pinned host key."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncssh

from hoopgw.errors import SecretError
from hoopgw.proxy.ssh._tuning import UPSTREAM_CIPHERS

if TYPE_CHECKING:
    from hoopgw.config import SshConnection

#: how long connecting and authenticating upstream may take
CONNECT_TIMEOUT_S = 15.0


class UpstreamError(Exception):
    """The target host cannot be reached or refused the gateway; the message is for the client."""


class _Pinned(asyncssh.SSHClient):
    """Trusts exactly one host key, by SHA256 fingerprint, and remembers what the server showed."""

    def __init__(self, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.seen = key.get_fingerprint("sha256")
        return self.fingerprint is not None and self.seen == self.fingerprint


#: host key algorithm families; a fingerprint pins one key of a server that may have several, so the
#: gateway asks for each family in turn until the server shows the pinned key (and remembers which)
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("ssh-ed25519",),
    ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    ("ssh-ed448",),
)
#: connection name -> the family whose key matched the pinned fingerprint
_MATCHED: dict[str, tuple[str, ...]] = {}


async def connect_upstream(cfg: SshConnection) -> asyncssh.SSHClientConnection:
    """Connect and authenticate to ``cfg.upstream`` with the brokered key or password.

    Raises UpstreamError with a message the client can be shown (never the credential).
    """
    fingerprint: str | None = getattr(cfg, "host_key", None)
    if fingerprint is None:
        return await _connect(cfg, None, ())
    known = _MATCHED.get(cfg.name)
    order = ([known] if known else []) + [f for f in _FAMILIES if f != known]
    seen: list[str] = []
    failure: UpstreamError | None = None
    for family in order:
        try:
            conn = await _connect(cfg, fingerprint, family)
        except _Mismatch as exc:
            if exc.seen is not None and exc.seen not in seen:
                seen.append(exc.seen)
            continue
        except UpstreamError as exc:
            if "refused the gateway's credential" in str(exc):
                raise
            failure = failure or exc  # e.g. the server has no key of this family and hangs up
            continue
        _MATCHED[cfg.name] = family
        return conn
    up = cfg.upstream
    if not seen and failure is not None:
        raise failure
    shown = ", ".join(seen) or "no host key the gateway could read"
    raise UpstreamError(
        f"upstream host key mismatch for {cfg.name!r} ({up.host}:{up.port}): the server presented "
        f"{shown}; the gateway pins {fingerprint}; refusing to connect"
    )


class _Mismatch(Exception):
    def __init__(self, seen: str | None) -> None:
        self.seen = seen


async def _connect(
    cfg: SshConnection, fingerprint: str | None, algs: tuple[str, ...]
) -> asyncssh.SSHClientConnection:
    up = cfg.upstream
    where = f"{up.user}@{up.host}:{up.port}"
    try:
        keys: list[asyncssh.SSHKey] = []
        password: str | None = None
        if cfg.private_key is not None:
            keys = [asyncssh.import_private_key(cfg.private_key.resolve())]
        if cfg.password is not None:
            password = cfg.password.resolve()
    except (SecretError, asyncssh.KeyImportError) as exc:
        raise UpstreamError(f"the gateway's credential for {cfg.name!r} cannot be loaded: {exc}") from None
    known_hosts = cfg.known_hosts
    client = _Pinned(fingerprint)
    try:
        conn, _ = await asyncio.wait_for(
            asyncssh.create_connection(
                lambda: client,
                up.host,
                up.port,
                username=up.user,
                client_keys=keys or None,
                password=password,
                # a fingerprint: trust nothing from files, decide in _Pinned; else the known_hosts file
                known_hosts=b"" if fingerprint is not None or known_hosts is None else str(known_hosts),
                server_host_key_algs=algs or (),
                encryption_algs=UPSTREAM_CIPHERS,
                agent_path=None,
                config=None,
                preferred_auth="publickey,password" if keys and password else (),
                x509_trusted_certs=None,
                ignore_encrypted=True,
                login_timeout=CONNECT_TIMEOUT_S,
                keepalive_interval=30,
            ),
            CONNECT_TIMEOUT_S + 1,
        )
    except asyncssh.HostKeyNotVerifiable:
        if fingerprint is not None:
            raise _Mismatch(client.seen) from None
        raise UpstreamError(
            f"upstream host key mismatch for {cfg.name!r} ({up.host}:{up.port}): the server presented "
            f"{client.seen or 'a key'} that is not in {known_hosts}; refusing to connect"
        ) from None
    except asyncssh.KeyExchangeFailed:
        raise UpstreamError(f"cannot agree on a key exchange with the target {where}") from None
    except asyncssh.PermissionDenied:
        raise UpstreamError(f"the target {where} refused the gateway's credential") from None
    except TimeoutError:
        raise UpstreamError(f"the target {where} did not answer in {CONNECT_TIMEOUT_S:.0f} s") from None
    except (OSError, asyncssh.Error) as exc:
        raise UpstreamError(f"cannot connect to the target {where}: {exc}") from None
    return conn
