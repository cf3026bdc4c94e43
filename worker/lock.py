"""A single-flight lock in Redis: set-if-absent with expiry, renewed by its owner, owner-released.

RQ job ids do not stop two schedulers (or a retry and a tick) from running reconciliation at
once; this lock does. The value is a random token, so only the run that took the lock can
extend or delete it (the store compares the token first: each page's script call renews it, and
a small Lua script releases it). A run that dies without releasing leaves a lock that expires by
itself after ``ttl_ms``.
"""

import secrets


class Lock:
    """The reconciliation lock of ``store``'s namespace; ``acquire()`` is non-blocking."""

    def __init__(self, store, ttl_ms):
        self.store = store
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(16)
        self.held = False

    def acquire(self):
        """True when this owner now holds the lock, False when someone else does."""
        self.held = self.store.lock_take(self.token, self.ttl_ms)
        return self.held

    def release(self):
        """Delete the lock if it is still ours; True when it was."""
        if not self.held:
            return False
        self.held = False
        return self.store.lock_release(self.token) == 1

    def release_unless_asked_again(self):
        """Release the lock, unless a request for another walk is pending: then take that
        request, keep the lock and answer True (the caller walks again)."""
        if not self.held:
            return False
        again = self.store.lock_release(self.token, handoff=True) == 2
        self.held = again
        return again
