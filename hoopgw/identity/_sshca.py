"""The gateway's SSH user CA: short-lived OpenSSH user certificates for people who logged in with a token.

The CA is an Ed25519 key in ``data_dir/ssh_user_ca`` (PKCS#8 PEM, mode 0600, created atomically on first
use). Only the gateway's own SSH listeners trust it; no sshd should (``TrustedUserCAKeys``): the gateway
brokers its own credentials upstream.

A certificate carries who it is for in fields the CA signature covers:

- ``key_id``: ``hoopgw:`` and a JSON object ``{"sub": SUBJECT, "groups": [...], "exp": VALID_BEFORE}``
  (plus ``"email"`` when the token had one). OpenSSH shows it (``ssh-keygen -L``) and logs it; the
  gateway reads subject and groups back from it. (asyncssh drops unknown extensions and refuses unknown
  critical options when it decodes a certificate, so the key id is the one free-form field that survives.)
- ``principals``: ``[SUBJECT]``; ``valid after`` now - 60 s (clock skew), ``valid before`` now + TTL;
  serial: 64 random bits (in the ``ssh_certificate_issued`` audit event).
- no ``force-command`` or ``source-address``; the usual ``permit-*`` extensions (pty, port, agent and X11
  forwarding, user rc), because the gateway's policy, not the certificate, decides what a session may do.

The SSH user name at the gateway names the target (``CONNECTION`` or ``NAME@CONNECTION``), not the person,
so it is not compared with the principal; see :mod:`hoopgw.identity._sshauth`.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import orjson
from asyncssh.public_key import SSHOpenSSHCertificate
from cryptography.hazmat.primitives import serialization

from hoopgw.identity._keyfile import load_or_create_key
from hoopgw.identity._principal import Principal
from hoopgw.identity._sshkeys import parse_public_key

log = logging.getLogger("hoopgw.identity")

#: The CA key's file name in ``data_dir``.
CA_FILE = "ssh_user_ca"
KEY_ID_PREFIX = "hoopgw:"
#: A certificate is valid from this many seconds before it was signed (clients' clocks run late).
BACKDATE_S = 60
MAX_TTL_S = 7 * 86400.0
#: asyncssh's constant for user certificates (SSH_CERT_TYPE_USER in OpenSSH's PROTOCOL.certkeys)
CERT_TYPE_USER = 1


def key_id_of(subject: str, groups: frozenset[str], valid_before: int, email: str | None = None) -> str:
    """The certificate key id naming ``subject`` and ``groups``."""
    doc: dict[str, Any] = {"sub": subject, "groups": sorted(groups), "exp": valid_before}
    if email:
        doc["email"] = email
    return KEY_ID_PREFIX + orjson.dumps(doc).decode()


def parse_key_id(key_id: str) -> tuple[str, frozenset[str], str | None] | None:
    """``(subject, groups, email)`` from a key id made by :func:`key_id_of`, or None."""
    if not key_id.startswith(KEY_ID_PREFIX):
        return None
    try:
        doc = orjson.loads(key_id[len(KEY_ID_PREFIX) :])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    sub, groups, email = doc.get("sub"), doc.get("groups"), doc.get("email")
    if not isinstance(sub, str) or not sub or not isinstance(groups, list):
        return None
    if not all(isinstance(g, str) for g in groups) or not (email is None or isinstance(email, str)):
        return None
    return sub, frozenset(groups), email


def cert_fields(cert: asyncssh.SSHCertificate) -> tuple[int, str, int, int, int] | None:
    """``(cert_type, key_id, valid_after, valid_before, serial)`` of an OpenSSH certificate, or None.

    asyncssh 2.24 (pinned) keeps these as private attributes of ``SSHOpenSSHCertificate``; the tests
    read them back from certificates ``ssh-keygen`` made, so a change in asyncssh fails them.
    """
    if not isinstance(cert, SSHOpenSSHCertificate):
        return None
    names = ("_cert_type", "_key_id", "_valid_after", "_valid_before", "_serial")
    cert_type, key_id, after, before, serial = (getattr(cert, name, None) for name in names)
    if not (isinstance(cert_type, int) and isinstance(key_id, str)):
        return None
    if not (isinstance(after, int) and isinstance(before, int) and isinstance(serial, int)):
        return None
    return cert_type, key_id, after, before, serial


def certificate_from_blob(blob: bytes) -> asyncssh.SSHCertificate | None:
    """The OpenSSH certificate in an SSH wire blob (as a client offers it), or None when the blob is not
    a certificate or not a valid one (its CA signature is checked while decoding)."""
    if len(blob) < 4:
        return None
    length = int.from_bytes(blob[:4], "big")
    if length > min(len(blob) - 4, 64):
        return None
    algorithm = blob[4 : 4 + length]
    if not algorithm.endswith(b"-cert-v01@openssh.com"):
        return None
    try:
        return asyncssh.import_certificate(algorithm + b" " + base64.b64encode(blob))
    except (asyncssh.KeyImportError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate :meth:`SshCertAuthority.issue` made, and what it says."""

    #: the OpenSSH one-line form (what ``KEY-cert.pub`` holds)
    certificate: str
    #: of the certified public key
    fingerprint: str
    key_id: str
    #: 16 hex digits
    serial: str
    valid_after: int
    valid_before: int


class SshCertAuthority:
    """Signs user certificates with the CA key in ``data_dir`` and recognises the ones it signed."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / CA_FILE
        self._key: asyncssh.SSHKey | None = None
        self._public: asyncssh.SSHKey | None = None

    @property
    def private_key(self) -> asyncssh.SSHKey:
        """The CA key (loaded, or created on first use)."""
        if self._key is None:
            key = load_or_create_key(self.path, "SSH user CA key")
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            self._key = asyncssh.import_private_key(pem)
        return self._key

    @property
    def public_key(self) -> asyncssh.SSHKey:
        """The CA's public key (what an SSH server trusts)."""
        if self._public is None:
            self._public = self.private_key.convert_to_public()
        return self._public

    def is_ca(self, key: asyncssh.SSHKey) -> bool:
        """Whether ``key`` is this CA's public key (``SSHServer.validate_ca_key``)."""
        return bytes(key.public_data) == bytes(self.public_key.public_data)

    def sign(
        self, principal: Principal, public_key_text: str, ttl_s: float, *, now: float | None = None
    ) -> str:
        """An OpenSSH user certificate (one line, ``...-cert-v01@openssh.com AAAA... comment``) for the
        public key ``public_key_text``, naming ``principal``, valid from ``now`` - 60 s for ``ttl_s``.

        ValueError for a bad key (as for registered keys) or TTL.
        """
        return self.issue(principal, public_key_text, ttl_s, now=now).certificate

    def issue(
        self, principal: Principal, public_key_text: str, ttl_s: float, *, now: float | None = None
    ) -> IssuedCertificate:
        """:meth:`sign`, with what the certificate says (for the API's answer and the audit event)."""
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"a certificate lifetime must be positive and at most {MAX_TTL_S / 86400:g} d")
        parsed = parse_public_key(public_key_text)
        at = int(time.time() if now is None else now)
        valid_before = at + int(ttl_s)
        key_id = key_id_of(principal.subject, principal.groups, valid_before, principal.email)
        serial = secrets.randbits(64)
        cert = self.private_key.generate_user_certificate(
            parsed.key,
            key_id,
            serial=serial,
            principals=[principal.subject],
            valid_after=at - BACKDATE_S,
            valid_before=valid_before,
            comment=f"hoopgw:{principal.subject}",
        )
        return IssuedCertificate(
            certificate=bytes(cert.export_certificate("openssh")).decode("ascii").strip(),
            fingerprint=parsed.fingerprint,
            key_id=key_id,
            serial=f"{serial:016x}",
            valid_after=at - BACKDATE_S,
            valid_before=valid_before,
        )

    def principal_of(self, cert: asyncssh.SSHCertificate, now: float | None = None) -> Principal | None:
        """The person a certificate this CA signed names (``auth="sshcert"``, ``expires_at`` its valid
        before, ``token_id`` its serial in hex), or None unless it is a user certificate of this CA,
        valid at ``now`` and naming its subject in both key id and principals."""
        fields = cert_fields(cert)
        if fields is None or not isinstance(cert, SSHOpenSSHCertificate) or not self.is_ca(cert.signing_key):
            return None
        cert_type, key_id, valid_after, valid_before, serial = fields
        at = time.time() if now is None else now
        if cert_type != CERT_TYPE_USER or not valid_after <= at < valid_before:
            return None
        parsed = parse_key_id(key_id)
        if parsed is None:
            return None
        subject, groups, email = parsed
        if list(cert.principals) != [subject]:
            return None
        return Principal(
            subject=subject,
            groups=groups,
            auth="sshcert",
            expires_at=float(valid_before),
            token_id=f"{serial:016x}",
            email=email,
        )


__all__ = [
    "CA_FILE",
    "IssuedCertificate",
    "SshCertAuthority",
    "cert_fields",
    "certificate_from_blob",
    "key_id_of",
    "parse_key_id",
]
