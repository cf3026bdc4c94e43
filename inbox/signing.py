"""Sign and verify Metriport webhooks: lowercase hex HMAC-SHA256 of the raw body.

Sign and verify live together so the simulator, the ``sign`` command and the tests sign with the
very code the receiver verifies with. The signature covers the exact bytes on the wire: never
re-serialize a body before verifying it.
"""

import hashlib
import hmac

from inbox.errors import SignatureError

HEADER = "x-metriport-signature"
_HEX = frozenset("0123456789abcdefABCDEF")


def sign(key, body):
    """The ``x-metriport-signature`` value for ``body`` (bytes) under ``key`` (str)."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(keys, body, signature):
    """Accept ``body`` if ``signature`` matches any of ``keys``; raise SignatureError otherwise.

    Every key is tried in constant time (no early exit), so rotation with two live keys leaks
    nothing about which one matched.
    """
    if not signature:
        raise SignatureError("The x-metriport-signature header is missing.", "signature_missing")
    signature = signature.strip()
    if len(signature) != 64 or not _HEX.issuperset(signature):
        raise SignatureError(
            "The x-metriport-signature header is not 64 hexadecimal characters.",
            "signature_malformed",
        )
    expected = signature.lower().encode("ascii")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(sign(key, body).encode("ascii"), expected)
    if not matched:
        raise SignatureError(
            "The signature does not match the body under any configured webhook key.",
            "signature_mismatch",
        )
