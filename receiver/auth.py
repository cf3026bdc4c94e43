"""The downstream API key: ``x-api-key`` checked in constant time against ``INBOX_API_KEYS``.

The mirror and feed routes serve PHI, so they fail closed: with no key configured every request
is refused, and a missing or wrong key gets the same 401 as Metriport's own API would give.
"""

import functools
import hmac

from flask import request

from inbox import audit
from inbox.crypto import fingerprint
from receiver.errors import error_response
from receiver.resources import resources

HEADER = "x-api-key"


def key_accepted(presented, api_keys):
    """True when ``presented`` equals one of ``api_keys``; every key is compared, in constant time."""
    presented = presented.encode()
    accepted = False
    for key in api_keys:
        accepted |= hmac.compare_digest(presented, key.encode())
    return accepted


def api_key_required(view):
    """Decorate a view so that it answers 401 unless the request carries an accepted key."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        api_keys = resources().settings.inbox_api_keys
        presented = request.headers.get(HEADER)
        if not api_keys:
            return error_response(
                401, "api_keys_not_configured",
                "This service has no INBOX_API_KEYS configured, so it serves nobody.",
            )
        if not presented:
            return error_response(401, "api_key_missing", "Send your API key in the x-api-key header.")
        if not key_accepted(presented, api_keys):
            return error_response(401, "api_key_invalid", "The x-api-key is not accepted.")
        return view(*args, **kwargs)

    return guarded


def audit_read(action, ids=(), invalid=0):
    """Record who (the key's fingerprint, never the key) read what, before the answer leaves.

    ``invalid`` counts requested ids the view refused (recorded as a number, never as text).
    Fails closed: when the audit entry cannot be written the read is not served (503).
    """
    shared = resources()
    who = fingerprint(request.headers[HEADER])
    audit.record(shared.connections.store, shared.redis_keys, who, action,
                 ids=ids, query=request.args, invalid=invalid)
