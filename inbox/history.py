"""What happened to one message: its versions, the deliveries and fetches, feed entries, reads.

The store's scripts keep a capped history in the record's field ``x`` (``scripts/record.lua``),
written in the same atomic call as the change it describes: each version created or updated with
its channel, status and digest prefix, and the deliveries, replays and fetches that brought
nothing new. Feed entries are looked up by the ids the history names; audit reads are found by
scanning the newest audit entries (bounded). Shared by the console and ``metriport-inbox trace``:
ids, times, channels, statuses and codes only, never content.
"""

import dataclasses

from inbox import audit
from inbox.connection import translate_errors
from inbox.rediskeys import RedisKeys
from inbox.normalize import valid_id
from inbox.store import Store

#: newest audit entries scanned for reads of one message
AUDIT_SCAN = 10_000


@dataclasses.dataclass(frozen=True)
class Event:
    """One line of a message's history."""

    at_ms: int
    event: str
    via: str
    version: int
    status: str
    digest: str
    feed_id: str
    delivery: str
    digest_changed: bool = False

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class History:
    """Everything recorded about one message id, oldest first."""

    id: str
    exists: bool
    events: tuple
    feed: tuple
    reads: tuple

    @property
    def deliveries(self):
        """Webhook deliveries that carried the message (replays included), in order."""
        return tuple(e for e in self.events if e.delivery)

    @property
    def fetches(self):
        return tuple(e for e in self.events if e.via == "fetch")

    def as_dict(self):
        return {
            "id": self.id,
            "exists": self.exists,
            "events": [e.as_dict() for e in self.events],
            "deliveries": [e.delivery for e in self.deliveries],
            "fetches": len(self.fetches),
            "feed": [dict(f) for f in self.feed],
            "reads": [r.as_dict() for r in self.reads],
        }


def parse(text):
    """The events of a history field ``x``, oldest first, each flagged when its digest changed."""
    events, previous = [], None
    for entry in reversed([e for e in (text or "").split(";") if e]):
        parts = (entry.split("|") + [""] * 8)[:8]
        at, event, via, version, status, digest, feed_id, delivery = parts
        changed = event == "updated" and digest != previous
        events.append(Event(
            at_ms=int(at or 0), event=event, via=via, version=int(version or 0), status=status,
            digest=digest, feed_id=feed_id, delivery=delivery, digest_changed=changed,
        ))
        if event in ("created", "updated"):
            previous = digest
    return events


def trace(settings, client, message_id, audit_scan=AUDIT_SCAN):
    """The ``History`` of ``message_id`` (ValueError for a string that is not an id)."""
    if not valid_id(message_id):
        raise ValueError("not a message id")
    keys = RedisKeys(settings.namespace)
    exists, text = Store(settings, client=client).history(message_id)
    events = parse(text)
    with translate_errors("read a message's feed entries"):
        pipe = client.pipeline(transaction=False)
        feed_ids = [e.feed_id for e in events if e.feed_id]
        for feed_id in feed_ids:
            pipe.xrange(keys.feed, min=feed_id, max=feed_id, count=1)
        found = pipe.execute() if feed_ids else []
    feed = []
    for feed_id, rows in zip(feed_ids, found):
        fields = {k.decode(): v.decode() for k, v in rows[0][1].items()} if rows else {}
        feed.append({"entry": feed_id, "present": bool(rows), "event": fields.get("event", ""),
                     "version": fields.get("version", ""), "via": fields.get("via", "")})
    reads = [
        entry for entry in audit.read(client, keys, limit=audit_scan)
        if message_id in entry.ids
    ][::-1]
    return History(id=message_id, exists=exists, events=tuple(events),
                   feed=tuple(feed), reads=tuple(reads))
