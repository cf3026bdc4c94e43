"""Will Redis keep what it acknowledged? The persistence and memory check of the store's server.

A ``2xx`` to Metriport is only as durable as Redis makes it (docs/operations.md): with AOF off,
``appendfsync no`` or an evicting ``maxmemory-policy``, a restart or a full memory loses
acknowledged messages that Metriport will not send again. ``check`` reads ``INFO`` (allowed on
managed Redis) and ``CONFIG GET appendfsync`` (often refused there: then reported unknown).
"""

import dataclasses

import redis

from inbox.connection import translate_errors

#: policies under which Redis deletes keys by itself when full
EVICTING = frozenset({
    "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
    "volatile-random", "volatile-ttl",
})


@dataclasses.dataclass(frozen=True)
class Persistence:
    """What the server says about durability and memory (None where it would not say)."""

    aof: bool | None
    appendfsync: str | None
    policy: str | None
    used_memory: int
    maxmemory: int

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

    @property
    def memory_ratio(self):
        """Used memory over maxmemory, or None when no limit is set."""
        return self.used_memory / self.maxmemory if self.maxmemory else None


def check(client):
    """The ``Persistence`` of the server behind ``client`` (StoreUnavailable when it is down)."""
    with translate_errors("check persistence"):
        info = client.info("persistence")
        memory = client.info("memory")
        try:
            appendfsync = client.config_get("appendfsync").get("appendfsync")
        except redis.ResponseError:  # CONFIG is disabled (managed Redis): unknown, not a failure
            appendfsync = None
    aof = info.get("aof_enabled")
    return Persistence(
        aof=None if aof is None else bool(int(aof)),
        appendfsync=appendfsync,
        policy=memory.get("maxmemory_policy"),
        used_memory=int(memory.get("used_memory", 0)),
        maxmemory=int(memory.get("maxmemory", 0)),
    )
