"""Operating figures shared by ``GET /metrics`` and ``metriport-inbox stats``.

Everything is read from Redis (the ``{ns}:stats`` counters every process increments, the
reconcile runs list, the feed and its groups), so any process reports the same numbers. Figures
hold counts, codes and ids of groups only, never message content.
"""

import dataclasses

import redis

from inbox.connection import Connections
from inbox.connection import translate_errors
from inbox.feed import Feed
from inbox.rediskeys import RedisKeys
from inbox.normalize import valid_code
from inbox.runs import RunLog
from inbox.store import Store

#: counters named ``rejected:<reason>`` count refused webhooks by reason code
REJECTED_PREFIX = "rejected:"
#: counters named ``unreadable:<reason>`` count records a read met but could not open
UNREADABLE_PREFIX = "unreadable:"
#: counters named ``runs:<outcome>`` count reconcile runs by outcome
RUNS_PREFIX = "runs:"


def safe_code(value):
    """``value`` when it looks like a machine code, else ``"other"`` (keeps labels PHI-free)."""
    return value if valid_code(value) else "other"


@dataclasses.dataclass(frozen=True)
class Memory:
    """Redis memory in use against ``maxmemory`` (0: no limit set), and the warning threshold.

    With ``maxmemory-policy noeviction`` a full Redis refuses writes (webhooks answer 503), so
    the warning comes at ``INBOX_MEMORY_WARN_PERCENT`` of ``maxmemory``, while there is time to
    add memory, shorten retention or move a namespace.
    """

    used: int
    maximum: int
    warn_percent: int
    policy: str

    @property
    def percent(self):
        """Share of ``maxmemory`` in use, in percent; None without a limit."""
        return round(100 * self.used / self.maximum, 1) if self.maximum else None

    @property
    def warning(self):
        return self.percent is not None and self.percent >= self.warn_percent

    def as_dict(self):
        return {"used": self.used, "max": self.maximum, "percent": self.percent,
                "warnPercent": self.warn_percent, "policy": self.policy, "warning": self.warning}

    def line(self):
        """One line for ``stats``: figures only."""
        used = f"{self.used / 2**20:.1f} MiB"
        if not self.maximum:
            return f"memory: {used} used, no maxmemory set (Redis grows until the host runs out)"
        text = (f"memory: {used} of {self.maximum / 2**20:.1f} MiB maxmemory ({self.percent}%), "
                f"policy {self.policy}")
        if self.warning:
            text += (f"; WARNING above {self.warn_percent}%: writes fail when it is full "
                     "(add memory or shorten INBOX_RETENTION_DAYS)")
        return text


def read_memory(client, settings):
    """The ``Memory`` of the server that holds ``settings``' namespace (on a cluster, the master
    of its slot: every key of a namespace lives there)."""
    with translate_errors("read memory figures"):
        if isinstance(client, redis.RedisCluster):
            node = client.get_node_from_key(RedisKeys(settings.namespace).stats)
            info = client.info("memory", target_nodes=node)
            if "used_memory" not in info:
                info = next(iter(info.values()))
        else:
            info = client.info("memory")
    return Memory(
        used=int(info.get("used_memory", 0)),
        maximum=int(info.get("maxmemory", 0)),
        warn_percent=settings.memory_warn_percent,
        policy=str(info.get("maxmemory_policy", "")),
    )


class Figures:
    """Reads the figures of one namespace."""

    def __init__(self, settings, client=None):
        self.settings = settings
        client = client if client is not None else Connections(settings).store
        self.client = client  # for INFO, which is about the server, not the store
        self.store = Store(settings, client=client)
        self.feed = Feed(settings, client=client)

    def counters(self):
        """The shared counters as ``{name: int}`` (``Store.stats``)."""
        return self.store.stats()

    def runs(self, limit=5):
        """The last ``limit`` reconcile runs (``inbox.runs.Run``), newest first."""
        return RunLog(self.store).recent(limit)

    def groups(self):
        return self.feed.groups()

    def feed_length(self):
        return self.feed.length()

    def deadletter_length(self):
        return self.feed.deadletter_length()

    def memory(self):
        return read_memory(self.client, self.settings)

    @property
    def encryption(self):
        return "on" if self.settings.encryption_on else "off"
