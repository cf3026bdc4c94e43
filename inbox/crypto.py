"""At-rest protection of stored resources: AES-256-GCM with a key ring, and keyed digests.

A sealed blob is ``0x01 ‖ len(kid) ‖ kid ‖ nonce(12) ‖ ciphertext+tag``, with the message id as
associated data, so a ciphertext copied to another record fails to open. The first key of the
ring seals; any key of the ring opens (rotation). Without keys the blob is ``0x00 ‖ JSON``: the
record says it was written unencrypted.

The JSON is compressed first (Zstandard against a dictionary of Metriport's message shapes,
inbox/compression.py) when that makes it shorter, to about a third for a 1 KB Communication: the
resource is most of a record's Redis memory. The compressed forms have marks of their own,
``0x03`` sealed (the mark is in the associated data, so a changed mark fails to open) and ``0x02``
written unencrypted. Compressing before sealing lets a ciphertext's length tell how repetitive
its message is, not only how long; docs/security.md weighs that.

With keys, a blob carrying neither mark (plain JSON put there by anything but this store: a
hand edit, another tool, a restore of a clear dump) is refused (``decrypt_unsealed``), never served
as authentic; a marked unencrypted blob is served until ``rekey`` seals it, which ends the
exception. The mark is not a MAC: it tells an unencrypted write of this service from a stray
blob, it does not stop someone who can write to Redis and knows the format.

Digests decide "same message?" for deduplication. With keys they are HMACs under a key derived
from a ring key, so a digest cannot confirm a guessed message; ``digests()`` returns one per ring
key, each tagged with what it can be compared with (meaning version and key id), so records
written before a rotation still compare equal, and a digest no key of the ring can reproduce (in
clear before keys were set, or under a retired key) is recognised as incomparable rather than as
different: the store then compares the opened resources instead.
"""

import base64
import datetime
import hashlib
import hmac
import os

from inbox import compression
from inbox.errors import DecryptionError
from inbox.settings import KEY_ID

#: first byte of a sealed blob, and of a blob written unencrypted (no keys in the ring); the
#: ``_COMPRESSED`` forms hold the JSON compressed (inbox/compression.py)
FORMAT_VERSION = 1
FORMAT_PLAIN = 0
FORMAT_PLAIN_COMPRESSED = 2
FORMAT_SEALED_COMPRESSED = 3
_SEALED = (FORMAT_VERSION, FORMAT_SEALED_COMPRESSED)
_PLAIN = (FORMAT_PLAIN, FORMAT_PLAIN_COMPRESSED)
_NONCE_BYTES = 12
_TAG_BYTES = 16
_DIGEST_CONTEXT = b"metriport-inbox digest v1"
_FINGERPRINT_CONTEXT = b"metriport-inbox api key fingerprint v1"
#: hex characters of an API key fingerprint (48 bits: tells keys apart, confirms none)
FINGERPRINT_HEX = 12


def keygen(kid=None):
    """A new ``kid:key`` entry for INBOX_ENCRYPTION_KEYS: 32 random bytes in URL-safe base64.

    The default kid is ``k`` + today's UTC date + 4 random hex digits, so ids sort by age and
    two keys made the same day still differ.
    """
    if kid is None:
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
        kid = "k" + today + os.urandom(2).hex()
    if not KEY_ID.fullmatch(kid):
        raise ValueError("A key id must be 1-16 characters of A-Z a-z 0-9 _ -.")
    return kid + ":" + base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def fingerprint(api_key):
    """A short, stable name for an API key (12 hex digits), safe to log and audit.

    A keyed hash under a fixed context, so it cannot be looked up in a plain SHA-256 table, and
    anyone holding the key can recompute it; the key itself cannot be recovered from it.
    """
    if isinstance(api_key, str):
        api_key = api_key.encode("utf-8")
    return hmac.new(_FINGERPRINT_CONTEXT, api_key, hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


def encryption_warning(settings):
    """The start-up warning (one sentence) when messages would be stored in clear; None with keys.

    The commands print it on stderr, and ``/readyz`` can put it in its details.
    """
    if settings.encryption_on:
        return None
    return (
        "INBOX_ENCRYPTION_KEYS is not set: messages are stored in Redis unencrypted "
        "(run `metriport-inbox keygen` and set it before storing real messages)."
    )


class Vault:
    """Seals and opens resources and computes their digests for one key ring."""

    def __init__(self, ring=()):
        #: ``(kid, 32-byte key)`` pairs, the current encryption key first
        self.ring = tuple(ring)
        self._aead = {}
        if self.ring:
            # cryptography is imported only for a ring with keys: a command that stores nothing
            # encrypted (``reconcile --once`` without keys) starts ~30 ms sooner
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = {kid: AESGCM(key) for kid, key in self.ring}
        self._digest_keys = tuple(
            hmac.new(key, _DIGEST_CONTEXT, hashlib.sha256).digest() for _, key in self.ring
        )

    @property
    def enabled(self):
        return bool(self.ring)

    @property
    def current_kid(self):
        return self.ring[0][0] if self.ring else None

    def digests(self, data, version):
        """Tagged digests ``<version>[.<kid>]:<hex>`` of ``data``, one per ring key, current first.

        ``version`` names what ``data`` is (``normalize.MEANING_VERSION``); without keys the one
        digest is a plain SHA-256 tagged ``<version>``. Two digests compare only when their tags
        are equal.
        """
        if not self._digest_keys:
            return [f"{version}:{hashlib.sha256(data).hexdigest()[:32]}"]
        return [
            f"{version}.{kid}:{hmac.new(key, data, hashlib.sha256).hexdigest()[:32]}"
            for (kid, _), key in zip(self.ring, self._digest_keys)
        ]

    def digest(self, data):
        """The current digest of ``data`` alone: what a record stores, or a delivery ledger holds.

        Webhook bodies for the ledger go through here too, so the ledger cannot confirm a
        guessed body either.
        """
        if not self._digest_keys:
            return hashlib.sha256(data).hexdigest()[:32]
        return hmac.new(self._digest_keys[0], data, hashlib.sha256).hexdigest()[:32]

    def seal(self, message_id, plaintext):
        """The stored form of ``plaintext`` for ``message_id``: encrypted when the ring has keys.

        Without keys, the plaintext marked as written unencrypted (``FORMAT_PLAIN``). Either way
        compressed first when that is shorter.
        """
        compressed = compression.compress(plaintext)
        shorter = len(compressed) < len(plaintext)
        if not self.ring:
            if shorter:
                return bytes((FORMAT_PLAIN_COMPRESSED,)) + compressed
            return bytes((FORMAT_PLAIN,)) + plaintext
        form = FORMAT_SEALED_COMPRESSED if shorter else FORMAT_VERSION
        kid = self.current_kid.encode("ascii")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self.current_kid].encrypt(
            nonce, compressed if shorter else plaintext, _associated_data(form, message_id))
        return bytes((form, len(kid))) + kid + nonce + sealed

    def open(self, message_id, blob):
        """The plaintext of a stored ``blob``; raises DecryptionError when it cannot be opened.

        A blob written unencrypted (before encryption was switched on) opens as its JSON until
        ``rekey`` seals it. An unmarked blob opens as itself only while the ring is empty.
        """
        form = blob[0] if blob else None
        if form in _PLAIN:
            return _decompress(message_id, blob[1:]) if form == FORMAT_PLAIN_COMPRESSED else blob[1:]
        if form not in _SEALED:
            if self.ring:
                raise DecryptionError(
                    f"Message {message_id} is stored unsealed without the mark of an unencrypted "
                    "write; it is not served while encryption is on.",
                    "decrypt_unsealed",
                )
            return blob
        kid = self.kid_of(blob)
        start = 2 + len(kid)
        if not KEY_ID.fullmatch(kid) or len(blob) < start + _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError(
                f"Message {message_id} has a malformed encryption header: tampered or truncated.",
                "decrypt_malformed",
            )
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptionError(
                f"Message {message_id} is sealed with key {kid!r}, which is not in the ring.",
                "decrypt_unknown_key",
            )
        nonce, sealed = blob[start:start + _NONCE_BYTES], blob[start + _NONCE_BYTES:]
        try:
            plaintext = aead.decrypt(nonce, sealed, _associated_data(form, message_id))
        except _invalid_tag():
            raise DecryptionError(
                f"Message {message_id} failed authentication: tampered, moved, or wrong key."
            ) from None
        return _decompress(message_id, plaintext) if form == FORMAT_SEALED_COMPRESSED else plaintext

    def is_current(self, blob):
        """True when ``blob`` is stored the way this ring writes today (``rekey`` skips it)."""
        return self.kid_of(blob) == self.current_kid

    @staticmethod
    def kid_of(blob):
        """The key id a blob was sealed with, or None for a plaintext blob."""
        if not blob or blob[0] not in _SEALED:
            return None
        if len(blob) < 2:
            return ""
        return blob[2:2 + blob[1]].decode("ascii", "replace")


def _associated_data(form, message_id):
    """What GCM authenticates besides the ciphertext: the message id, and for the compressed form
    its mark too (the first format predates the mark being covered; it stays as it was)."""
    data = message_id.encode("utf-8")
    return data if form == FORMAT_VERSION else bytes((form,)) + data


def _decompress(message_id, data):
    """The JSON of a compressed blob; a DecryptionError when it does not decompress."""
    try:
        return compression.decompress(data)
    except ValueError:
        raise DecryptionError(
            f"Message {message_id} holds a compressed resource that does not decompress: "
            "tampered or truncated.",
            "decrypt_malformed",
        ) from None


def _invalid_tag():
    """cryptography's ``InvalidTag``, imported where a sealed blob is opened (see ``Vault``)."""
    from cryptography.exceptions import InvalidTag

    return InvalidTag
