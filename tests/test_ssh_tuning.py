"""The asyncssh tuning of the SSH gateway: the cached AES-GCM object encrypts exactly as a fresh one."""

from __future__ import annotations

import os

from asyncssh.crypto import cipher as asyncssh_cipher
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hoopgw.proxy.ssh._tuning import install


def test_cached_gcm_matches_a_fresh_aead_packet_after_packet() -> None:
    install()
    key, iv = os.urandom(16), os.urandom(12)
    sender = asyncssh_cipher.GCMCipher("aes128-gcm", key, iv)
    receiver = asyncssh_cipher.GCMCipher("aes128-gcm", key, iv)
    nonce = iv
    for size in (0, 1, 31, 32768, 5):
        header, data = os.urandom(4), os.urandom(size)
        sealed, tag = sender.encrypt_and_sign(header, data)
        # the same packet sealed by a fresh AESGCM with the expected invocation counter
        want = AESGCM(key).encrypt(nonce, data, header)
        assert sealed == header + want[:-16] and tag == want[-16:]
        assert receiver.verify_and_decrypt(header, sealed[4:], tag) == data
        nonce = nonce[:4] + ((int.from_bytes(nonce[4:], "big") + 1) % (1 << 64)).to_bytes(8, "big")
    # a forged tag is refused, and the counter still moves on (as asyncssh's own code does)
    header, data = os.urandom(4), b"x"
    sealed, tag = sender.encrypt_and_sign(header, data)
    assert receiver.verify_and_decrypt(header, sealed[4:], bytes(16)) is None


def test_no_cbc_cipher_is_offered_on_either_leg() -> None:
    from hoopgw.proxy.ssh._tuning import CIPHERS_WITHOUT_CBC, UPSTREAM_CIPHERS

    # the empty MSG_IGNORE before each packet is left out, which is safe only without CBC ciphers
    assert not any("cbc" in c for c in (*CIPHERS_WITHOUT_CBC, *UPSTREAM_CIPHERS))
