"""Configuration: every environment variable read once into one frozen ``Settings``.

``Settings.from_env()`` is the only place in the project that reads ``os.environ`` for
configuration. Each row of ``_VARIABLES`` is one variable: its name, its parser and its default.
A malformed value raises ``ConfigError`` with one sentence naming the variable.
"""

import base64
import binascii
import dataclasses
import enum
import os
import re
from urllib.parse import urlsplit

from inbox.errors import ConfigError

#: URL forms of REDIS_URL and RQ_REDIS_URL (parsed in ``inbox.connection``):
#: ``redis://[[user]:password@]host:port/db``, ``rediss://`` (TLS), ``unix:///path?db=N``,
#: ``redis+cluster://[[user]:password@]host:port[,host:port...]/`` (Redis Cluster startup nodes;
#: store only, RQ cannot run on a cluster) and
#: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/<master-name>[/db]``.
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel")
CLUSTER_SCHEME = "redis+cluster"


class Direction(enum.StrEnum):
    """Which way a message went, as Metriport names it (its List Messages filter)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


#: every direction, inbound first; its members compare equal to their plain strings
DIRECTIONS = tuple(Direction)
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: a key id of the encryption key ring
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")  # matched with fullmatch


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the service needs to know, typed and validated; pass it down, never re-read env."""

    redis_url: str = "redis://localhost:6379/0"
    rq_redis_url: str | None = None
    namespace: str = "inbox"
    webhook_keys: tuple[str, ...] = ()
    api_key: str | None = None
    api_url: str = "https://api.metriport.com"
    inbox_api_keys: tuple[str, ...] = ()
    operator_keys: tuple[str, ...] = ()
    encryption_keys: tuple[tuple[str, bytes], ...] = ()
    reconcile_interval: int = 300
    reconcile_full_interval: int = 86400
    reconcile_directions: tuple[str, ...] = DIRECTIONS
    reconcile_page_size: int = 500
    reconcile_stop_after: int = 2
    reconcile_request_budget: int = 1000
    reconcile_deadline: int = 1800
    metriport_rate_limit: float = 0.0
    webhook_auto_retry: bool = False
    webhook_max_bytes: int = 1024 * 1024
    feed_maxlen: int = 1_000_000
    retention_days: int | None = None
    memory_warn_percent: int = 80

    @classmethod
    def from_env(cls, environ=None):
        """Build settings from ``environ`` (default ``os.environ``); raise ConfigError on bad values."""
        environ = os.environ if environ is None else environ
        values = {}
        for variable, field, parse in _VARIABLES:
            raw = environ.get(variable)
            if raw is None or raw.strip() == "":
                continue
            values[field] = parse(variable, raw.strip())
        _check_queue(values)
        return cls(**values)

    def replace(self, **changes):
        """A copy with some fields changed (tests and commands override this way)."""
        return dataclasses.replace(self, **changes)

    @property
    def queue_redis_url(self):
        """Where RQ keeps its queue: ``RQ_REDIS_URL``, else the store's own server."""
        return self.rq_redis_url or self.redis_url

    @property
    def queue_name(self):
        """The RQ queue of this namespace: workers of one account never take another's jobs."""
        return self.namespace

    @property
    def encryption_on(self):
        return bool(self.encryption_keys)


def redact_url(url):
    """``url`` with any password replaced by ``***``, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{hosts}").geturl()


def _redis_url(variable, raw):
    scheme = urlsplit(raw).scheme
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{variable} must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}; "
            f"got scheme {scheme or '(none)'!r}."
        )
    return raw


def _check_queue(values):
    """RQ needs its own standalone or Sentinel Redis when the store is a Redis Cluster."""
    def is_cluster(url):
        return url is not None and urlsplit(url).scheme == CLUSTER_SCHEME

    if is_cluster(values.get("rq_redis_url")):
        raise ConfigError(
            "RQ_REDIS_URL must name a standalone (redis://) or Sentinel (redis+sentinel://) Redis: "
            "RQ does not work on a Redis Cluster."
        )
    if is_cluster(values.get("redis_url")) and not values.get("rq_redis_url"):
        raise ConfigError(
            "REDIS_URL names a Redis Cluster, so RQ_REDIS_URL must name a standalone or Sentinel "
            "Redis for the job queue (RQ does not work on a cluster)."
        )


def _http_url(variable, raw):
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{variable} must be an http:// or https:// URL with a host.")
    return raw.rstrip("/")


def _namespace(variable, raw):
    if not _NAMESPACE.fullmatch(raw):
        raise ConfigError(f"{variable} must be 1-64 characters of A-Z a-z 0-9 _ . - (no braces).")
    return raw


def _text(variable, raw):
    return raw


def _key_list(variable, raw):
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys:
        raise ConfigError(f"{variable} must hold at least one non-empty comma-separated key.")
    return keys


def _key_ring(variable, raw):
    ring = []
    for position, entry in enumerate(raw.split(","), start=1):
        kid, sep, encoded = entry.strip().partition(":")
        if not sep or not KEY_ID.fullmatch(kid):
            raise ConfigError(
                f"{variable} entry {position} must be kid:key with a kid of 1-16 A-Za-z0-9_- "
                "characters (metriport-inbox keygen prints one)."
            )
        key = _strict_key(encoded)
        if len(key) != 32:
            raise ConfigError(
                f"{variable} entry {position} ({kid}) must carry URL-safe base64 of 32 bytes."
            )
        if kid in (k for k, _ in ring):
            raise ConfigError(f"{variable} names key id {kid!r} twice.")
        ring.append((kid, key))
    return tuple(ring)


#: URL-safe base64 of 32 bytes: 43 characters, the last one carrying only 2 bits, and optional
#: ``=`` padding; nothing else (``base64`` would skip junk characters and ignore text after ``=``)
_KEY_B64 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048](=)?")


def _strict_key(encoded):
    """The 32 bytes of ``encoded``, or b"" when it is not exactly URL-safe base64 of 32 bytes."""
    if not _KEY_B64.fullmatch(encoded):
        return b""
    try:
        return base64.b64decode(encoded.rstrip("=") + "=", altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return b""


def _positive_int(variable, raw):
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{variable} must be a positive whole number; got {raw!r}.")
    return value


def _percent(variable, raw):
    value = _positive_int(variable, raw)
    if value >= 100:
        raise ConfigError(f"{variable} must be a percentage from 1 to 99; got {raw!r}.")
    return value


def _page_size(variable, raw):
    value = _positive_int(variable, raw)
    if value > 500:
        raise ConfigError(f"{variable} must be at most 500 (Metriport's largest page).")
    return value


def _rate(variable, raw):
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"{variable} must be a number of requests per second, 0 for no limit.")
    return value


def _flag(variable, raw):
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{variable} must be true or false; got {raw!r}.")


def _directions(variable, raw):
    directions = tuple(d.strip() for d in raw.split(",") if d.strip())
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise ConfigError(f"{variable} must be inbound, outbound or both, comma-separated.")
    return directions


_VARIABLES = (
    ("REDIS_URL", "redis_url", _redis_url),
    ("RQ_REDIS_URL", "rq_redis_url", _redis_url),
    ("INBOX_NAMESPACE", "namespace", _namespace),
    ("METRIPORT_WEBHOOK_KEY", "webhook_keys", _key_list),
    ("METRIPORT_API_KEY", "api_key", _text),
    ("METRIPORT_API_URL", "api_url", _http_url),
    ("INBOX_API_KEYS", "inbox_api_keys", _key_list),
    ("INBOX_OPERATOR_KEYS", "operator_keys", _key_list),
    ("INBOX_ENCRYPTION_KEYS", "encryption_keys", _key_ring),
    ("RECONCILE_INTERVAL", "reconcile_interval", _positive_int),
    ("RECONCILE_FULL_INTERVAL", "reconcile_full_interval", _positive_int),
    ("RECONCILE_DIRECTIONS", "reconcile_directions", _directions),
    ("RECONCILE_PAGE_SIZE", "reconcile_page_size", _page_size),
    ("RECONCILE_STOP_AFTER", "reconcile_stop_after", _positive_int),
    ("RECONCILE_REQUEST_BUDGET", "reconcile_request_budget", _positive_int),
    ("RECONCILE_DEADLINE", "reconcile_deadline", _positive_int),
    ("METRIPORT_RATE_LIMIT", "metriport_rate_limit", _rate),
    ("METRIPORT_WEBHOOK_AUTO_RETRY", "webhook_auto_retry", _flag),
    ("WEBHOOK_MAX_BYTES", "webhook_max_bytes", _positive_int),
    ("FEED_MAXLEN", "feed_maxlen", _positive_int),
    ("INBOX_RETENTION_DAYS", "retention_days", _positive_int),
    ("INBOX_MEMORY_WARN_PERCENT", "memory_warn_percent", _percent),
)
