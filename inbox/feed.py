"""The feed: every change to the store as a Redis Stream entry, for downstream apps to consume.

Delivery is **at least once**. An entry is pending until its consumer acks it; an entry left
pending longer than ``claim_idle`` (its consumer died, or failed on it) is claimed again by any
consumer of the group with ``XAUTOCLAIM``, and after ``max_deliveries`` deliveries it moves to the
dead-letter stream instead, with the reason. A consumer can therefore see an entry twice: the
feed entry id (``FeedEntry.id``) is the idempotency key to remember.

Entries carry ids and routing fields only; ``Consumer.read`` loads each message from the store
(decrypted) and reports a record that is gone or cannot be opened on the entry (``error``)
instead of failing the whole read. The message is the store's current version, which may be newer
than the version the entry announced.
"""

import dataclasses
import math
import os
import re
import socket

import redis

from inbox.connection import Connections
from inbox.connection import translate_errors
from inbox.errors import DecryptionError
from inbox.errors import InvalidPosition
from inbox.rediskeys import RedisKeys
from inbox.store import Store

#: deliveries of one entry before it moves to the dead-letter stream
DEFAULT_MAX_DELIVERIES = 5
#: seconds an entry stays pending with its consumer before another one may claim it
DEFAULT_CLAIM_IDLE = 60.0
#: on Redis 6.2 (no ``lag`` in XINFO GROUPS) lag is counted entry by entry up to this many
LAG_COUNT_LIMIT = 100_000

#: a stream entry id: ``<ms>-<seq>`` or ``<ms>``, each part an unsigned 64-bit number (Redis's limit)
_POSITION = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_ID_PART_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True)
class FeedEntry:
    """One feed entry: ``id`` is its stream id (the idempotency key), the rest routes it.

    ``message`` is the stored message (``inbox.store.StoredMessage``) when read by a consumer;
    ``error`` says why it is missing (``message_missing``, ``decrypt_failed``,
    ``record_unreadable``); ``deliveries`` counts how often the group has handed it out.
    """

    id: str
    event: str
    message_id: str
    via: str
    version: int
    direction: str | None
    patient: str | None
    status: str | None
    message: object = None
    error: str | None = None
    deliveries: int = 1

    @classmethod
    def from_fields(cls, entry_id, fields):
        """An entry from a raw stream entry (bytes id and fields)."""
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            id=_text(entry_id),
            event=text.get("event", ""),
            message_id=text.get("id", ""),
            via=text.get("via", ""),
            version=int(text.get("version") or 0),
            direction=text.get("direction") or None,
            patient=text.get("patient") or None,
            status=text.get("status") or None,
        )

    def routing(self):
        """The entry as JSON-ready routing fields (ids only, never content)."""
        return {
            "id": self.id,
            "event": self.event,
            "messageId": self.message_id,
            "via": self.via,
            "version": self.version,
            "direction": self.direction,
            "patientId": self.patient,
            "status": self.status,
        }


@dataclasses.dataclass(frozen=True)
class GroupInfo:
    """Progress of one consumer group: entries handed out but not acked, and not yet handed out."""

    name: str
    consumers: int
    pending: int
    last_delivered: str
    lag: int


def check_position(position):
    """``position`` if it is a stream entry id Redis accepts, else ``InvalidPosition``.

    The whole string must match (no trailing newline) and each part must fit in 64 bits: Redis
    answers anything else with an error, which would otherwise surface as a 500.
    """
    found = _POSITION.fullmatch(position) if isinstance(position, str) else None
    if found is None or any(int(part) > _ID_PART_MAX for part in found.groups() if part):
        raise InvalidPosition(
            "A feed position must be a stream entry id such as 1718000000000-0 "
            f"(each part at most {_ID_PART_MAX})."
        )
    return position


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


class Feed:
    """The feed stream of one namespace: reading by position, its groups and its dead letters."""

    def __init__(self, settings, client=None):
        self.settings = settings
        self.redis_keys = RedisKeys(settings.namespace)
        self.client = client if client is not None else Connections(settings).store

    def length(self):
        """Entries in the feed (after trimming to ``FEED_MAXLEN``)."""
        with translate_errors("read the feed length"):
            return self.client.xlen(self.redis_keys.feed)

    def deadletter_length(self):
        with translate_errors("read the dead-letter length"):
            return self.client.xlen(self.redis_keys.deadletter)

    def after(self, position=None, limit=100):
        """Up to ``limit`` entries strictly after ``position`` (None: from the first entry)."""
        if position and check_position(position) == f"{_ID_PART_MAX}-{_ID_PART_MAX}":
            return []  # nothing can follow the largest id (Redis refuses an exclusive start there)
        start = f"({position}" if position else "-"
        with translate_errors("read the feed"):
            rows = self.client.xrange(self.redis_keys.feed, min=start, max="+", count=limit)
        return [FeedEntry.from_fields(entry_id, fields) for entry_id, fields in rows]

    def wait_after(self, position, limit, block, client):
        """Like ``after`` but waits up to ``block`` seconds for entries (XREAD on ``client``).

        ``position`` "$" means after the last entry written so far; ``client`` must be a
        blocking-read client (``Connections.blocking``).
        """
        if position != "$":
            check_position(position)
        with translate_errors("wait for feed entries"):
            reply = client.xread({self.redis_keys.feed: position}, count=limit, block=int(block * 1000))
        rows = reply[0][1] if reply else []
        return [FeedEntry.from_fields(entry_id, fields) for entry_id, fields in rows]

    def last_position(self):
        """The id of the newest entry, or "0-0" for an empty feed."""
        with translate_errors("read the feed"):
            rows = self.client.xrevrange(self.redis_keys.feed, count=1)
        return _text(rows[0][0]) if rows else "0-0"

    def deadletters(self, limit=100):
        """The dead-letter entries, oldest first, as dicts of text."""
        with translate_errors("read the dead-letter stream"):
            rows = self.client.xrange(self.redis_keys.deadletter, count=limit)
        return [
            {"id": _text(i), **{_text(k): _text(v) for k, v in fields.items()}} for i, fields in rows
        ]

    def purge(self, message_ids, patient, batch=200):
        """Delete every feed and dead-letter entry naming one of ``message_ids`` or ``patient``;
        ``(feed entries, dead letters)`` removed.

        The streams are read ``batch`` entries per call. A deleted entry is also acked in every
        group, so no consumer is handed an entry that no longer exists.
        """
        message_ids = set(message_ids)

        def named(fields):
            return (fields.get(b"id", b"").decode() in message_ids
                    or fields.get(b"patient", b"").decode() == patient)

        groups = [group.name for group in self.groups()]
        removed = self._purge(self.redis_keys.feed, named, groups, batch)
        dead = self._purge(self.redis_keys.deadletter, named, [], batch)
        return removed, dead

    def _purge(self, key, named, groups, batch):
        removed, start = 0, "-"
        while True:
            with translate_errors("read the feed to purge"):
                rows = self.client.xrange(key, min=start, max="+", count=batch)
            doomed = [entry_id for entry_id, fields in rows if named(fields)]
            if doomed:
                with translate_errors("delete feed entries"):
                    pipe = self.client.pipeline(transaction=False)
                    for group in groups:
                        pipe.xack(key, group, *doomed)
                    pipe.xdel(key, *doomed)
                    removed += pipe.execute()[-1]
            if len(rows) < batch:
                return removed
            start = f"({_text(rows[-1][0])}"

    def groups(self):
        """A ``GroupInfo`` per consumer group (empty when nobody consumes yet)."""
        with translate_errors("read the consumer groups"):
            try:
                rows = self.client.xinfo_groups(self.redis_keys.feed)
            except redis.ResponseError:  # no stream yet
                return []
            return [self._group(row) for row in rows]

    def _group(self, row):
        last = _text(row["last-delivered-id"])
        lag = row.get("lag")
        if lag is None:  # Redis < 7.0, or 7.x after a deletion made it unknown
            lag = self._count_after(last)
        return GroupInfo(
            name=_text(row["name"]),
            consumers=int(row["consumers"]),
            pending=int(row["pending"]),
            last_delivered=last,
            lag=int(lag),
        )

    def _count_after(self, position, chunk=1000):
        """Entries after ``position``, counted by walking the stream (capped by LAG_COUNT_LIMIT)."""
        total, start = 0, f"({position}"
        while total < LAG_COUNT_LIMIT:
            rows = self.client.xrange(self.redis_keys.feed, min=start, max="+", count=chunk)
            total += len(rows)
            if len(rows) < chunk:
                break
            start = f"({_text(rows[-1][0])}"
        return min(total, LAG_COUNT_LIMIT)


class Consumer:
    """One consumer in a consumer group of the feed; the group is created on first use.

    ``from_start=True`` makes a new group begin with the oldest entry still in the feed, False
    with the next entry written. Entries a dead consumer left pending for ``claim_idle`` seconds
    are claimed by the next ``read``; an entry handed out ``max_deliveries`` times moves to the
    dead-letter stream with reason ``max_deliveries`` and is acked.
    """

    def __init__(
        self,
        settings,
        group,
        name=None,
        *,
        from_start=True,
        max_deliveries=DEFAULT_MAX_DELIVERIES,
        claim_idle=DEFAULT_CLAIM_IDLE,
        connections=None,
        store=None,
    ):
        self.settings = settings
        self.group = group
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.from_start = from_start
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = int(claim_idle * 1000)
        self.redis_keys = RedisKeys(settings.namespace)
        self.connections = connections or Connections(settings)
        self.client = self.connections.store
        self.store = store or Store(settings, client=self.client)
        self._blocking = {}
        self._group_ready = False
        self._claim_cursor = "0-0"

    def ensure_group(self):
        """Create the consumer group unless it exists (a no-op the second time)."""
        with translate_errors("create a consumer group"):
            try:
                self.client.xgroup_create(
                    self.redis_keys.feed, self.group, id="0" if self.from_start else "$", mkstream=True
                )
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    def read(self, count=10, block=None):
        """Up to ``count`` entries for this consumer, messages loaded; waits ``block`` seconds.

        Entries other consumers left pending too long come first; then new ones. With ``block``
        None the call returns at once (possibly with no entries).
        """
        if not self._group_ready:
            self.ensure_group()
        entries = self.reclaim(count)
        if not entries:
            entries = self._read_new(count, block)
        return self._load(entries)

    def _read_new(self, count, block):
        client = self.client if not block else self._blocking_client(block)
        with translate_errors("read the feed"):
            try:
                reply = client.xreadgroup(
                    self.group, self.name, {self.redis_keys.feed: ">"}, count=count,
                    block=int(block * 1000) if block else None,
                )
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.ensure_group()  # the stream was deleted and recreated
                return []
        rows = reply[0][1] if reply else []
        return [FeedEntry.from_fields(entry_id, fields) for entry_id, fields in rows]

    def _blocking_client(self, block):
        """A client whose read timeout outlasts ``block``; one per whole number of seconds."""
        seconds = math.ceil(block)
        if seconds not in self._blocking:
            self._blocking[seconds] = self.connections.blocking(seconds)
        return self._blocking[seconds]

    def reclaim(self, count=10):
        """Claim up to ``count`` entries idle longer than ``claim_idle`` from any consumer.

        Entries past ``max_deliveries`` go to the dead-letter stream instead of being returned;
        entries trimmed out of the feed while pending are acked and dead-lettered as ``trimmed``.
        """
        with translate_errors("reclaim idle feed entries"):
            reply = self.client.xautoclaim(
                self.redis_keys.feed, self.group, self.name, self.claim_idle_ms,
                start_id=self._claim_cursor, count=count,
            )
            self._claim_cursor = _text(reply[0])
            claimed = [(i, f) for i, f in reply[1] if i is not None]
            trimmed = [_text(i) for i in reply[2]] if len(reply) > 2 else []
            if len(claimed) < len(reply[1]):  # Redis 6.2 answers trimmed entries as nil
                trimmed.extend(self._pending_trimmed())
            for entry_id in trimmed:
                self._bury(entry_id, None, "trimmed", None)
            if not claimed:
                return []
            deliveries = self._deliveries([_text(i) for i, _ in claimed])
        entries = []
        for entry_id, fields in claimed:
            entry = dataclasses.replace(
                FeedEntry.from_fields(entry_id, fields), deliveries=deliveries.get(_text(entry_id), 1)
            )
            if entry.deliveries > self.max_deliveries:
                self.dead_letter(entry, "max_deliveries")
            else:
                entries.append(entry)
        return entries

    def _deliveries(self, entry_ids):
        pipe = self.client.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xpending_range(self.redis_keys.feed, self.group, entry_id, entry_id, 1)
        counts = {}
        for rows in pipe.execute():
            for row in rows:
                counts[_text(row["message_id"])] = int(row["times_delivered"])
        return counts

    def _pending_trimmed(self):
        """Ids this consumer holds pending whose entries are no longer in the feed."""
        rows = self.client.xpending_range(
            self.redis_keys.feed, self.group, "-", "+", 1000, consumername=self.name
        )
        pipe = self.client.pipeline(transaction=False)
        ids = [_text(row["message_id"]) for row in rows]
        for entry_id in ids:
            pipe.xrange(self.redis_keys.feed, min=entry_id, max=entry_id, count=1)
        return [entry_id for entry_id, found in zip(ids, pipe.execute()) if not found]

    def _load(self, entries):
        """Attach each entry's stored message; a vanished or unreadable record sets ``error``."""
        if not entries:
            return []
        if any(entry.event == "expired" for entry in entries):  # nothing left to load for these
            loaded = iter(self._load([entry for entry in entries if entry.event != "expired"]))
            return [entry if entry.event == "expired" else next(loaded) for entry in entries]
        ids = [entry.message_id for entry in entries]
        try:
            messages = self.store.get_many(ids)
            errors = [None if m is not None else "message_missing" for m in messages]
        except (DecryptionError, ValueError):  # one bad record: open them one by one
            messages, errors = [], []
            for message_id in ids:
                try:
                    message = self.store.get(message_id)
                    messages.append(message)
                    errors.append(None if message is not None else "message_missing")
                except DecryptionError as exc:
                    messages.append(None)
                    errors.append(exc.code)
                except ValueError:  # opened, but not JSON
                    messages.append(None)
                    errors.append("record_unreadable")
        return [
            dataclasses.replace(entry, message=message, error=error)
            for entry, message, error in zip(entries, messages, errors)
        ]

    def ack(self, *entries):
        """Mark entries (``FeedEntry`` objects or entry ids) as processed by this group."""
        ids = [e.id if isinstance(e, FeedEntry) else e for e in entries]
        if not ids:
            return 0
        with translate_errors("acknowledge feed entries"):
            return self.client.xack(self.redis_keys.feed, self.group, *ids)

    def dead_letter(self, entry, reason):
        """Move ``entry`` to the dead-letter stream with ``reason`` (a code) and ack it."""
        with translate_errors("dead-letter a feed entry"):
            self._bury(entry.id, entry.message_id, reason, entry.deliveries)

    def _bury(self, entry_id, message_id, reason, deliveries):
        """Dead-letter record and ack in one transaction: ids and the reason, never content."""
        fields = {"entry": entry_id, "group": self.group, "consumer": self.name, "reason": reason}
        if message_id:
            fields["id"] = message_id
        if deliveries is not None:
            fields["deliveries"] = deliveries
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.redis_keys.deadletter, fields, maxlen=self.settings.feed_maxlen, approximate=True)
        pipe.xack(self.redis_keys.feed, self.group, entry_id)
        pipe.execute()

    def pending(self):
        """How many entries this group has handed out and not had acked yet."""
        with translate_errors("read pending feed entries"):
            return int(self.client.xpending(self.redis_keys.feed, self.group)["pending"])
