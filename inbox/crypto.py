"""At-rest protection of stored resources: AES-256-GCM with a key ring, and keyed digests.

A sealed blob is ``0x01 ‖ len(kid) ‖ kid ‖ nonce(12) ‖ ciphertext+tag``, with the message id as
associated data, so a ciphertext copied to another record fails to open. The first key of the
ring seals; any key of the ring opens (rotation). Without keys the blob is the JSON itself.

Digests decide "same content?" for deduplication. With keys they are HMACs under a key derived
from a ring key, so a digest cannot confirm a guessed message; ``digests()`` returns one per ring
key so that records written before a rotation still compare equal until ``rekey`` rewrites them.
"""

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from inbox.errors import DecryptionError

FORMAT_VERSION = 1
_NONCE_BYTES = 12
_DIGEST_CONTEXT = b"metriport-inbox digest v1"


class Vault:
    """Seals and opens resources and computes their digests for one key ring."""

    def __init__(self, keys=()):
        self.keys = tuple(keys)
        self._aead = {kid: AESGCM(key) for kid, key in self.keys}
        self._digest_keys = tuple(
            hmac.new(key, _DIGEST_CONTEXT, hashlib.sha256).digest() for _, key in self.keys
        )

    @property
    def enabled(self):
        return bool(self.keys)

    @property
    def current_kid(self):
        return self.keys[0][0] if self.keys else None

    def digests(self, canonical):
        """Comma-joined hex digests of ``canonical`` bytes: the current one first."""
        if not self._digest_keys:
            return hashlib.sha256(canonical).hexdigest()[:32]
        return ",".join(
            hmac.new(key, canonical, hashlib.sha256).hexdigest()[:32] for key in self._digest_keys
        )

    def seal(self, message_id, plaintext):
        """The stored form of ``plaintext`` for ``message_id``: encrypted when the ring has keys."""
        if not self.keys:
            return plaintext
        kid = self.current_kid.encode("ascii")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self.current_kid].encrypt(nonce, plaintext, message_id.encode("utf-8"))
        return bytes((FORMAT_VERSION, len(kid))) + kid + nonce + sealed

    def open(self, message_id, blob):
        """The plaintext of a stored ``blob``; raises DecryptionError when it cannot be opened."""
        if not blob or blob[0] != FORMAT_VERSION:
            return blob
        kid = self.kid_of(blob)
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptionError(
                f"Message {message_id} is sealed with key {kid!r}, which is not in the ring."
            )
        start = 2 + blob[1]
        nonce, sealed = blob[start:start + _NONCE_BYTES], blob[start + _NONCE_BYTES:]
        try:
            return aead.decrypt(nonce, sealed, message_id.encode("utf-8"))
        except InvalidTag:
            raise DecryptionError(
                f"Message {message_id} failed authentication: tampered, moved, or wrong key."
            ) from None

    @staticmethod
    def kid_of(blob):
        """The key id a blob was sealed with, or None for a plaintext blob."""
        if not blob or blob[0] != FORMAT_VERSION:
            return None
        return blob[2:2 + blob[1]].decode("ascii", "replace")
