"""Public-key and certificate authentication of SSH clients at the gateway (the asyncssh server side).

asyncssh hands an ``SSHServer`` the offered public key (``validate_public_key(username, key)``) but, for
a certificate, only its CA key (``validate_ca_key(username, ca_key)``); it then checks the certificate
itself (user type, validity window, and that the *SSH user name* is one of its principals) and never
shows the application the certificate. The gateway needs both more and less: the certificate's key id
(who and which groups), and no comparison with the user name, which names the target connection
(``bankhost``, ``alice@bankhost``), not the person.

:meth:`SshClientAuth.attach` therefore wraps the connection's ``validate_public_key`` (the method
asyncssh's public-key auth calls with the raw key or certificate blob): a certificate is first checked
by :meth:`SshCertAuthority.principal_of`, then passed on to asyncssh with the certificate's subject as
the user name, so asyncssh still checks the CA (through ``validate_ca_key``), type, validity window,
principal and the client's signature. The user name the client signed is unchanged (asyncssh verifies
the signature over the original request). Plain keys go through unchanged to ``validate_public_key``.

The Principal is set only when a request *with a signature* succeeds, i.e. when asyncssh is about to
report success: a probe (``PK_OK``) of one key followed by a signed login with another ends with the
other's Principal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncssh

from hoopgw.identity._principal import Principal
from hoopgw.identity._sshca import SshCertAuthority, certificate_from_blob
from hoopgw.identity._sshkeys import SshKeyStore

_Validate = Callable[[str, bytes, bytes, bytes], Awaitable[bool]]
#: ``accept(principal)``: whether this person may log in here (e.g. a policy names them on the connection)
Accept = Callable[[Principal], bool]
#: ``refused(method, reason)``: a key nobody registered or a certificate that is not valid (``method``:
#: ``publickey`` or ``certificate``), e.g. for an ``auth_failed`` audit event
Refused = Callable[[str, str], None]


def _yes(_principal: Principal) -> bool:
    return True


def _quiet(_method: str, _reason: str) -> None:
    return None


class SshClientAuth:
    """The public-key authentication state of one SSH client connection.

    Use from an ``asyncssh.SSHServer`` (one per connection)::

        def __init__(self, ...):               self.auth = SshClientAuth(keys, ca, accept=..., refused=...)
        def connection_made(self, conn):        self.auth.attach(conn)
        def public_key_auth_supported(self):    return True
        async def validate_public_key(self, username, key):  return await self.auth.validate_public_key(key)
        def validate_ca_key(self, username, key):            return self.auth.validate_ca_key(key)

    ``accept`` is asked about every person a registered key or a valid certificate names (its answer is
    the answer); :attr:`principal` is who logged in once a public-key login succeeded.
    """

    def __init__(
        self,
        keys: SshKeyStore,
        ca: SshCertAuthority,
        *,
        accept: Accept = _yes,
        refused: Refused = _quiet,
    ) -> None:
        self.keys = keys
        self.ca = ca
        self.accept = accept
        self.refused = refused
        #: who logged in with a key or certificate (None until a public-key login succeeds)
        self.principal: Principal | None = None
        self._offered: Principal | None = None
        self._signed = False
        self._attached = False

    def attach(self, conn: asyncssh.SSHServerConnection) -> None:
        """Route ``conn``'s public-key checks through this object (call from ``connection_made``)."""
        inner: _Validate = conn.validate_public_key

        async def validate_public_key(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
            self._offered = None
            # an unsigned probe (PK_OK) proves nothing: it is answered from the key alone, and who the
            # key names is asked about (``accept``, which may tell the client why not) only once signed
            self._signed = bool(msg)
            cert = certificate_from_blob(key_data)
            if cert is not None:
                principal = self.ca.principal_of(cert)
                if principal is None:
                    self.refused("certificate", "not valid now, or not from the gateway's SSH user CA")
                    return False
                # asyncssh checks it again: CA (validate_ca_key), type, validity, principal, signature
                if not await inner(principal.subject, key_data, msg, signature):
                    return False
                if msg and not self.accept(principal):
                    return False
                self._offered = principal
            elif not await inner(username, key_data, msg, signature):
                return False
            if msg:  # a signed request asyncssh accepted: the login succeeds now
                self.principal = self._offered
            return self._offered is not None

        conn.validate_public_key = validate_public_key  # type: ignore[method-assign]  # the per-connection hook above
        self._attached = True

    async def validate_public_key(self, key: asyncssh.SSHKey) -> bool:
        """``SSHServer.validate_public_key``: whether ``key`` is registered to someone ``accept`` lets in
        (the store is read on a worker thread on every attempt, so a removal takes effect at once)."""
        if not self._attached:
            return False
        principal = await asyncio.to_thread(self.keys.principal_for, key)
        if principal is None:
            self.refused("publickey", f"no registered key {key.get_fingerprint('sha256')}")
            return False
        if self._signed and not self.accept(principal):
            return False
        self._offered = principal
        return True

    def validate_ca_key(self, key: asyncssh.SSHKey) -> bool:
        """``SSHServer.validate_ca_key``: whether ``key`` is the gateway's SSH user CA."""
        return self._attached and self.ca.is_ca(key)


__all__ = ["Accept", "Refused", "SshClientAuth"]
