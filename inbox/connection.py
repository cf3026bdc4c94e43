"""Redis clients, built in one place with timeouts that fail fast.

redis-py 8's defaults (5 s socket timeout, 10 retries) make a hung Redis block a request for about
a minute, and ``from_url`` alone gets no retries at all. Here every client gets an explicit
0.5 s connect/read timeout and two jittered retries, so a call fails in well under 2 s when Redis
hangs or is down, and recovers by itself when it is back. Feed consumers that block on XREADGROUP
get their own client whose read timeout exceeds the block time.

Redis failures are translated once, here, into ``StoreUnavailable``.
"""

import contextlib
import functools

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from inbox.errors import ConfigError
from inbox.errors import StoreUnavailable

#: seconds to open a TCP connection, and to wait for one reply
SOCKET_TIMEOUT = 0.5
#: retries after the first attempt; with the backoff cap, worst case ~1.7 s in all
RETRIES = 2
BACKOFF = dict(base=0.05, cap=0.1)

_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
)


def _common_options(socket_timeout):
    return dict(
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialWithJitterBackoff(**BACKOFF), RETRIES),
        # No health_check_interval: redis-py runs that PING, with its own retries, inside every
        # connection handshake, which multiplies the attempts (about 5 s on a hung server).
        # A dead pooled connection is caught by the command retry instead.
        health_check_interval=0,
        client_name="metriport-inbox",
    )


def connect(url, socket_timeout=SOCKET_TIMEOUT):
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``) that fails fast.

    redis-py connects lazily, so this does no I/O: safe to call before gunicorn forks.
    """
    scheme = url.split("://", 1)[0]
    if scheme in ("redis+cluster", "redis+sentinel"):
        raise ConfigError(f"REDIS_URL scheme {scheme}:// is not supported by this build.")
    return redis.Redis.from_url(url, **_common_options(socket_timeout))


class Connections:
    """The clients of one process, each created on first use.

    redis-py pools notice a fork and reconnect in the child, so one ``Connections`` made before
    gunicorn forks is safe to share with its workers and their threads.
    """

    def __init__(self, settings):
        self.settings = settings

    @functools.cached_property
    def store(self):
        """The client for the store, the feed and the reconciliation state."""
        return connect(self.settings.redis_url)

    def blocking(self, block_seconds):
        """A client for reads that block up to ``block_seconds`` (XREADGROUP BLOCK)."""
        return connect(self.settings.redis_url, socket_timeout=block_seconds + 5)

    @functools.cached_property
    def queue(self):
        """The client for RQ (RQ needs a standalone or Sentinel Redis, never a cluster)."""
        return connect(self.settings.queue_redis_url)


@contextlib.contextmanager
def translate_errors(action):
    """Turn Redis connection failures inside the block into ``StoreUnavailable``.

    ``action`` names what was being done, for the one-sentence detail (never any content).
    """
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"Redis is unavailable while trying to {action} ({type(exc).__name__})."
        ) from exc
