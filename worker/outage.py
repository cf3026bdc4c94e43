"""Riding out a Redis outage in the long-running processes: the RQ worker and the clock.

A worker or clock must outlive any Redis outage without anyone restarting it: it waits with
backoff and carries on where it was. An operator reads one line when Redis is lost and one when
it is back, however long the outage (not one line per retry, never a traceback). A refused
password is no outage but a configuration error: waiting cannot fix it, so the process ends
with one line and exit code 2, like every other configuration error.
"""

import logging
import time

import redis

from inbox.connection import is_unavailable
from inbox.errors import ConfigError
from inbox.errors import StoreUnavailable

log = logging.getLogger("worker.outage")

#: first wait after a failure; doubled after each further failure, up to MAX_DELAY (seconds)
FIRST_DELAY = 0.5
MAX_DELAY = 5.0


class RedisLost(StoreUnavailable):
    """Raised when a call in RQ's loop fails because Redis cannot answer now; cause kept for the log.

    Deliberately not a ``redis.ConnectionError``: RQ catches those in its dequeue loop and logs
    one error per retry, while this one reaches our own loop, which logs the state change once.
    """

    code = "redis_lost"


def refused_password(exc):
    """True when ``exc`` (or its cause) is Redis refusing the configured credentials."""
    while exc is not None:
        if isinstance(exc, redis.AuthenticationError) or (
            isinstance(exc, redis.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS"))
        ):
            return True
        exc = exc.__cause__
    return False


def is_outage(exc):
    """True when ``exc`` means Redis cannot answer now (down, restarting, hung, full)."""
    if isinstance(exc, StoreUnavailable):  # RedisLost included
        return True
    return isinstance(exc, (redis.RedisError, redis.exceptions.RedisClusterException)) and (
        is_unavailable(exc)
    )


class Outage:
    """Whether Redis answers, with one log line per change and a growing wait while it does not.

    ``variable`` names the setting of the Redis in question (``REDIS_URL``, ``RQ_REDIS_URL``),
    for the one line that ends the process on a refused password.
    """

    def __init__(self, variable, sleep=time.sleep):
        self.variable = variable
        self.since = None
        self.delay = FIRST_DELAY
        self._sleep = sleep

    def lost(self, exc):
        """Note a failure (logging it if Redis was up) and wait before the caller retries.

        Raises ``ConfigError`` when Redis refused the password: that is no outage.
        """
        if refused_password(exc):
            raise ConfigError(
                f"Redis refused the credentials in {self.variable}: check the password "
                f"(and user) in the URL."
            )
        if self.since is None:
            self.since = time.monotonic()
            cause = exc.__cause__ if isinstance(exc, RedisLost) and exc.__cause__ else exc
            log.warning("Redis (%s) lost (%s): retrying with backoff until it answers",
                        self.variable, type(cause).__name__)
        self._sleep(self.delay)
        self.delay = min(self.delay * 2, MAX_DELAY)

    def back(self):
        """Note a success (logging it if Redis was lost)."""
        if self.since is not None:
            log.warning("Redis (%s) back after %.0f s", self.variable, time.monotonic() - self.since)
            self.since = None
        self.delay = FIRST_DELAY

    @property
    def down(self):
        return self.since is not None

    def wait_until_up(self, client):
        """PING ``client`` until it answers (the first call of a process started in an outage)."""
        while True:
            try:
                client.ping()
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not is_outage(exc):
                    raise
                self.lost(exc)
                continue
            self.back()
            return
