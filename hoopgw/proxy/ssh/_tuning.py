"""Throughput settings for the gateway's two SSH legs (bench/ssh_e2e.py measures them).

- The upstream leg, where the gateway is the client and chooses, prefers AES-GCM: in asyncssh it costs a
  third of chacha20-poly1305 per packet (one AEAD call against three cipher objects).
- Channels relayed upstream get a larger window and packet size, so a bulk stream waits for window
  adjustments less often.
- asyncssh 2.24 builds a new ``AESGCM`` object for every packet; :func:`install` makes each GCM cipher
  keep one for its key (the key does not change for the life of the cipher object; a rekey makes a new
  one).
- asyncssh 2.24 sends an empty MSG_IGNORE before every packet once encryption is on, a countermeasure
  for CBC ciphers (predictable IVs); none of the ciphers it offers by default, and none the gateway allows,
  is CBC, so :func:`install` leaves those out: half the packets and write calls of an interactive session.

Both patches apply only to the pinned asyncssh version they were written for.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncssh
from asyncssh import connection as _connection
from asyncssh.constants import MSG_IGNORE
from asyncssh.crypto import cipher as _cipher
from asyncssh.packet import String
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("hoopgw.ssh")

#: the upstream leg's encryption preference (the target's own order is not consulted: the client's wins)
UPSTREAM_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
#: the window and packet size of channels the gateway opens upstream (asyncssh: 2 MiB / 32 KiB)
UPSTREAM_WINDOW = 8 << 20
UPSTREAM_MAX_PKTSIZE = 128 << 10

#: what the gateway offers and accepts on either leg (asyncssh's defaults): no CBC cipher
CIPHERS_WITHOUT_CBC = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)

_PATCHED_VERSION = "2.24.1"
_EMPTY = String(b"")
_GCM_TAG = 16
_installed = False


def install() -> None:
    """Cache the AESGCM object per GCM cipher (idempotent; a no-op on another asyncssh version)."""
    global _installed
    if _installed:
        return
    _installed = True
    gcm: Any = getattr(_cipher, "GCMCipher", None)
    if asyncssh.__version__ != _PATCHED_VERSION or gcm is None:
        log.info("asyncssh GCM tuning not applied", extra={"asyncssh": asyncssh.__version__})
        return

    def _aead(self: Any) -> AESGCM:
        aead: AESGCM | None = self.__dict__.get("_hoopgw_aead")
        if aead is None:
            aead = AESGCM(self._key)
            self.__dict__["_hoopgw_aead"] = aead
        return aead

    def encrypt_and_sign(self: Any, header: bytes, data: bytes) -> tuple[bytes, bytes]:
        sealed = _aead(self).encrypt(self._iv, data, header)
        self._update_iv()
        return header + sealed[:-_GCM_TAG], sealed[-_GCM_TAG:]

    def verify_and_decrypt(self: Any, header: bytes, data: bytes, mac: bytes) -> bytes | None:
        try:
            plain: bytes | None = _aead(self).decrypt(self._iv, data + mac, header)
        except InvalidTag:
            plain = None
        self._update_iv()
        return plain

    gcm.encrypt_and_sign = encrypt_and_sign
    gcm.verify_and_decrypt = verify_and_decrypt

    conn_class: Any = _connection.SSHConnection
    send_packet = conn_class.send_packet
    ignore = MSG_IGNORE

    def send_without_padding_packets(self: Any, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == ignore and args == (_EMPTY,):
            return  # the CBC countermeasure: no CBC cipher is ever negotiated here
        send_packet(self, pkttype, *args, handler=handler)

    conn_class.send_packet = send_without_padding_packets
