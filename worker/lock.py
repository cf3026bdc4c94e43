"""A single-flight lock in Redis: set-if-absent with expiry, renewed by its owner, owner-released.

RQ job ids do not stop two schedulers (or a retry and a tick) from running reconciliation at
once; this lock does. The value is a random token, so only the run that took the lock can
extend or delete it (two small Lua scripts compare the token first). A run that dies without
releasing leaves a lock that expires by itself after ``ttl_ms``.
"""

import secrets

from inbox.connection import translate_errors
from inbox.store import load_script


class Lock:
    """One named lock on ``client``; ``acquire()`` is non-blocking."""

    def __init__(self, client, key, ttl_ms):
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(16)
        self.held = False
        self._renew = client.register_script(load_script("lock_renew"))
        self._release = client.register_script(load_script("lock_release"))

    def acquire(self):
        """True when this owner now holds the lock, False when someone else does."""
        with translate_errors("take the reconciliation lock"):
            self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def renew(self, pipeline=None):
        """Extend the expiry; True if still ours. With ``pipeline`` the call is only queued."""
        if pipeline is not None:
            return self._renew(keys=[self.key], args=[self.token, self.ttl_ms], client=pipeline)
        with translate_errors("renew the reconciliation lock"):
            self.held = bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))
        return self.held

    def release(self):
        """Delete the lock if it is still ours; True when it was."""
        if not self.held:
            return False
        self.held = False
        with translate_errors("release the reconciliation lock"):
            return bool(self._release(keys=[self.key], args=[self.token]))
