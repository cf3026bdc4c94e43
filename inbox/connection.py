"""Redis clients, built in one place with timeouts that fail fast.

redis-py 8's defaults (5 s socket timeout, 10 retries) make a hung Redis block a request for about
a minute, and ``from_url`` alone gets no retries at all. Here every client gets an explicit
0.5 s connect/read timeout and two jittered retries, so a call fails in well under 2 s when Redis
hangs or is down, and recovers by itself when it is back. Feed consumers that block on XREADGROUP
get their own client whose read timeout exceeds the block time.

Three URL forms besides ``redis://``, ``rediss://`` and ``unix://`` (see ``docs/scaling.md``):
``redis+cluster://[[user]:password@]host:port[,host:port...]/`` names startup nodes of a Redis
Cluster (redis-py's ``RedisCluster``, same timeouts and retries), and
``redis+sentinel://[[user]:password@]host:port[,host:port...]/<master-name>[/<db>]`` names Sentinels
watching a primary (``Sentinel(...).master_for(...)``; the password is the primary's).

Redis failures, including a cluster that is down or a slot without a reachable master, are
translated once, here, into ``StoreUnavailable``; a Redis at ``maxmemory`` that refuses a write
(``OOM command not allowed``) into its subclass ``StoreFull``.
"""

import contextlib
import functools
from urllib.parse import unquote

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from inbox.errors import ConfigError
from inbox.errors import StoreFull
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
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)
#: URL schemes for which ``connect`` builds a cluster client / a Sentinel-managed client
CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"


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
    """A client for ``url`` (any form in the module docstring) that fails fast.

    redis-py connects lazily, so this does no I/O (safe to call before gunicorn forks), except
    for a cluster: its client reads the slot map when created, and raises ``StoreUnavailable``
    when no startup node answers. Pools notice a fork either way and reconnect in the child.
    """
    scheme = url.split("://", 1)[0]
    if scheme == CLUSTER_SCHEME:
        return _cluster(url, socket_timeout)
    if scheme == SENTINEL_SCHEME:
        return _sentinel(url, socket_timeout)
    return redis.Redis.from_url(url, **_common_options(socket_timeout))


def is_cluster_url(url):
    """True when ``url`` names a Redis Cluster (``redis+cluster://``)."""
    return url.split("://", 1)[0] == CLUSTER_SCHEME


def _cluster(url, socket_timeout):
    credentials, nodes, path = _split(url)
    if path.strip("/"):
        raise ConfigError(
            "A redis+cluster:// URL takes no database or path (a cluster has db 0 only)."
        )
    options = _common_options(socket_timeout)
    retry = options.pop("retry")
    with translate_errors("read the cluster's slot map"):
        return redis.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in nodes],
            retry=retry,
            **credentials,
            **options,
        )


def _sentinel(url, socket_timeout):
    credentials, nodes, path = _split(url)
    master, _, db = path.strip("/").partition("/")
    if not master or (db and not db.isdigit()):
        raise ConfigError(
            "A redis+sentinel:// URL must end in /<master-name> or /<master-name>/<db>."
        )
    # no retries per Sentinel query: the primary's connection already retries the whole lookup
    sentinel = redis.Sentinel(nodes, sentinel_kwargs=dict(
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialWithJitterBackoff(**BACKOFF), 0),
    ))
    return sentinel.master_for(
        master, db=int(db or 0), **credentials, **_common_options(socket_timeout)
    )


def _split(url):
    """``(credentials, [(host, port)...], path)`` of a URL whose netloc lists several nodes."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    credentials = {}
    if at:
        username, _, password = userinfo.partition(":")
        if username:
            credentials["username"] = unquote(username)
        if password:
            credentials["password"] = unquote(password)
    nodes = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"Redis URL nodes must be host:port, comma-separated; got {entry.strip()!r}."
            )
        nodes.append((host.strip("[]"), int(port)))
    return credentials, nodes, path


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
        if is_cluster_url(self.settings.queue_redis_url):
            raise ConfigError(
                "RQ cannot use a Redis Cluster: set RQ_REDIS_URL to a standalone or "
                "redis+sentinel:// Redis."
            )
        return connect(self.settings.queue_redis_url)


@contextlib.contextmanager
def translate_errors(action):
    """Turn Redis connection failures inside the block into ``StoreUnavailable``.

    ``action`` names what was being done, for the one-sentence detail (never any content).
    """
    try:
        yield
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        if _out_of_memory(exc):
            raise StoreFull(
                f"Redis is full (maxmemory reached) and refused to {action}; nothing was written."
            ) from exc
        if not _unavailable(exc):
            raise
        raise StoreUnavailable(
            f"Redis is unavailable while trying to {action} ({type(exc).__name__})."
        ) from exc


def is_unavailable(exc):
    """True when a Redis error means "Redis cannot take this now" (down, hung, full).

    Long-running processes use it to tell an outage, which they wait out, from a bug.
    """
    return _out_of_memory(exc) or _unavailable(exc)


def _out_of_memory(exc):
    """True when Redis refused a write at maxmemory.

    Redis 7 answers ``-OOM`` (redis-py's ``OutOfMemoryError``), also from inside a script;
    Redis 6 wraps a script's OOM in a generic "Error running script" reply.
    """
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.ResponseError) and "-OOM command not allowed" in str(exc)
    )


def _unavailable(exc):
    """True for errors that mean "Redis cannot answer now", not "this call is wrong".

    The cluster client reports unreachable nodes and uncovered slots found while re-reading
    the slot map as a bare ``RedisClusterException``, caused by a connection error.
    """
    if isinstance(exc, _UNAVAILABLE):
        return True
    if type(exc) is redis.exceptions.RedisClusterException:
        return isinstance(exc.__cause__, _UNAVAILABLE) or "slots are not covered" in str(exc)
    return False
