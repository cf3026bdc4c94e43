"""Will Redis keep what it acknowledged? The persistence check of the store's server.

A ``2xx`` to Metriport is only as durable as Redis makes it (docs/operations.md): with AOF off,
``appendfsync no`` or an evicting ``maxmemory-policy``, a restart or a full memory loses
acknowledged messages that Metriport will not send again. ``check`` reads ``INFO`` (allowed on
managed Redis) and ``CONFIG GET appendfsync`` (often refused there: then reported unknown). On
a Redis Cluster it asks the master of the namespace's slot, where every key of it lives. Memory
used against ``maxmemory`` is ``inbox.figures.Memory``.
"""

import dataclasses

import redis

from inbox.connection import translate_errors
from inbox.rediskeys import RedisKeys

#: policies under which Redis deletes keys by itself when full
EVICTING = frozenset({
    "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
    "volatile-random", "volatile-ttl",
})


@dataclasses.dataclass(frozen=True)
class Persistence:
    """What the server says about durability (None where it would not say)."""

    aof: bool | None
    appendfsync: str | None
    policy: str | None

    @property
    def warnings(self):
        """One sentence per setting that could lose acknowledged messages."""
        found = []
        if self.aof is False:
            found.append("AOF is off: a Redis restart loses every write since the last snapshot.")
        if self.aof and self.appendfsync == "no":
            found.append("appendfsync is no: a machine crash loses writes the kernel had not flushed.")
        if self.policy in EVICTING:
            found.append(f"maxmemory-policy is {self.policy}: a full Redis evicts stored messages.")
        return found

    @property
    def ok(self):
        return not self.warnings


def check(client, settings):
    """The ``Persistence`` of the server holding ``settings``' namespace (StoreUnavailable if down)."""
    target = {}
    if isinstance(client, redis.RedisCluster):
        target = {"target_nodes": client.get_node_from_key(RedisKeys(settings.namespace).stats)}
    with translate_errors("check persistence"):
        info = _one(client.info("persistence", **target))
        memory = _one(client.info("memory", **target))
        try:
            appendfsync = _one(client.config_get("appendfsync", **target)).get("appendfsync")
        except redis.ResponseError:  # CONFIG is disabled (managed Redis): unknown, not a failure
            appendfsync = None
    aof = info.get("aof_enabled")
    return Persistence(
        aof=None if aof is None else bool(int(aof)),
        appendfsync=appendfsync,
        policy=memory.get("maxmemory_policy"),
    )


def _one(reply):
    """A cluster client answers per node when given a node: the one node's answer."""
    if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
        return next(iter(reply.values()))
    return reply
