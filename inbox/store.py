"""The message store: one atomic Lua upsert per message or page, and the reads around it.

Both ways in (webhooks, reconciliation) end in ``Store.upsert``; the feed stream is written by
the same script call, so the store and the feed always agree. Redis failures surface as
``StoreUnavailable`` (translated in ``inbox.connection``), never as redis-py exceptions.
"""

import collections
import dataclasses
import enum
import importlib.resources
import json
import time

from inbox.connection import Connections
from inbox.connection import translate_errors
from inbox.crypto import Vault
from inbox.errors import InvalidMessage
from inbox.keys import Keys
from inbox.normalize import status_code
from inbox.record import Meta
from inbox.record import lua_prelude
from inbox.record import unpack_routing

#: how long a webhook delivery id is remembered (Metriport's manual retries come within days)
LEDGER_TTL_SECONDS = 30 * 24 * 3600


class Via(str, enum.Enum):
    """The channel a version of a message came through."""

    WEBHOOK = "webhook"
    RECONCILE = "reconcile"
    FETCH = "fetch"


class Outcome(str, enum.Enum):
    """What the upsert decided for one message."""

    CREATED = "created"
    UPDATED = "updated"
    DUPLICATE = "duplicate"
    STALE = "stale"
    FORGOTTEN = "forgotten"


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A webhook delivery: Metriport's ``meta.messageId`` and a hash of the exact body."""

    id: str
    body_hash: str


@dataclasses.dataclass(frozen=True)
class Result:
    """Outcomes of one upsert call, in the order of the records; ``replay`` if the ledger hit."""

    outcomes: tuple = ()
    replay: bool = False

    def counts(self):
        """``{"created": n, "updated": n, "duplicates": n, "stale": n}`` for summaries."""
        tally = collections.Counter(self.outcomes)
        return {
            "created": tally[Outcome.CREATED],
            "updated": tally[Outcome.UPDATED],
            "duplicates": tally[Outcome.DUPLICATE],
            "stale": tally[Outcome.STALE],
        }


@dataclasses.dataclass
class Expiry:
    """What one ``Store.expire`` batch did: ids turned into tombstones and the rest, by reason."""

    expired: list = dataclasses.field(default_factory=list)
    kept: int = 0
    changed: int = 0
    gone: int = 0
    bytes: int = 0


@dataclasses.dataclass(frozen=True)
class StoredMessage(Meta):
    """A record as the store holds it: its packed fields, and the resource opened and parsed."""

    id: str
    resource: dict


def _age(meta):
    """The time retention measures for a record: the later of its message time (else when it
    was first seen) and its as-of, so a status change inside the window keeps a message."""
    return max(meta.first_seen if meta.message_time is None else meta.message_time, meta.as_of)


def load_script(name):
    """The text of ``inbox/scripts/<name>.lua``."""
    return importlib.resources.files("inbox").joinpath("scripts", f"{name}.lua").read_text()


def load_record_script(name):
    """The text of a script that reads or writes records, after the record prelude."""
    return lua_prelude() + load_script(name)


class Store:
    """Records, indexes, feed and counters of one namespace on one Redis."""

    def __init__(self, settings, client=None):
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.vault = Vault(settings.encryption_keys)
        self.client = client if client is not None else Connections(settings).store
        self._upsert = self.client.register_script(load_record_script("messages_upsert"))
        self._status = self.client.register_script(load_record_script("message_status"))
        self._unindex = self.client.register_script(load_record_script("patient_unindex"))
        self._expire = self.client.register_script(load_record_script("messages_expire"))
        self._forget = self.client.register_script(load_record_script("messages_forget"))

    def upsert(self, records, via, delivery=None):
        """Record ``records`` (normalized) in one atomic call; a ``Result`` in the same order.

        With a ``delivery``, a replay of the same delivery id and body is answered
        ``Result(replay=True)`` without touching any record.
        """
        via = Via(via)
        keys = [self.keys.feed, self.keys.stats, self.keys.idx_all]
        keys.append(self.keys.delivery(delivery.id) if delivery else self.keys.stats)
        args = [
            via.value,
            int(time.time() * 1000),
            self.settings.feed_maxlen,
            delivery.body_hash if delivery else "",
            LEDGER_TTL_SECONDS,
        ]
        for record in records:
            keys.append(self.keys.msg(record.id))
            keys.append(self.keys.idx_direction(record.direction) if record.direction else self.keys.idx_all)
            keys.append(self.keys.idx_patient(record.patient) if record.patient else self.keys.idx_all)
            args.extend((
                record.id,
                self.vault.seal(record.id, record.body),
                self.vault.digests(record.canonical),
                record.direction or "",
                record.patient or "",
                record.status or "",
                "" if record.message_time is None else record.message_time,
                record.as_of,
            ))
        with translate_errors("store messages"):
            reply = self._upsert(keys=keys, args=args)
            if reply == b"replay":
                return Result(replay=True)
            outcomes, moved = reply
            if moved:
                self._unindex_moved(moved)
        return Result(outcomes=tuple(Outcome(o.decode()) for o in outcomes))

    def apply_status(self, message_id, status, as_of, via=Via.WEBHOOK):
        """Apply a delivery status (``message.status``) to a stored message.

        Returns the ``Outcome``, or None when the message is not stored yet (the caller then
        fetches it). The resource stays as received; the canonical one follows by fetch.
        Raises ``InvalidMessage`` (``invalid_status``) for a status that is not a code.
        """
        if status_code(status) is None:
            raise InvalidMessage("The status must be a code such as completed or failed.",
                                 "invalid_status")
        keys = [self.keys.msg(message_id), self.keys.feed, self.keys.stats]
        args = [message_id, Via(via).value, int(time.time() * 1000), self.settings.feed_maxlen,
                status, as_of or 0]
        with translate_errors("apply a message status"):
            reply = self._status(keys=keys, args=args).decode()
        return None if reply == "unknown" else Outcome(reply)

    def _unindex_moved(self, moved):
        """Drop ids from the patient index they left (a message re-linked to another patient)."""
        for message_id, old_patient in zip(moved[::2], moved[1::2]):
            message_id = message_id.decode()
            keys = [self.keys.msg(message_id), self.keys.idx_patient(old_patient.decode())]
            self._unindex(keys=keys, args=[message_id, old_patient])

    def expire(self, message_ids, cutoff_ms):
        """Turn the records of ``message_ids`` whose newest time is before ``cutoff_ms`` into
        tombstones (``messages_expire.lua``), in two round trips; an ``Expiry``.

        The caller bounds the batch: both calls hold ``len(message_ids)`` records.
        """
        result = Expiry()
        with translate_errors("read records to expire"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hmget(self.keys.msg(message_id), "m", "x")
            rows = pipe.execute()
        keys = [self.keys.feed, self.keys.stats, self.keys.idx_all]
        args = [int(time.time() * 1000), self.settings.feed_maxlen, cutoff_ms]
        candidates = []
        for message_id, (meta, gone) in zip(message_ids, rows):
            if meta is None or gone is not None:
                result.gone += 1
                continue
            meta = Meta.unpack(meta.decode())
            if _age(meta) >= cutoff_ms:
                result.kept += 1
                continue
            candidates.append(message_id)
            keys.extend(self._record_keys(message_id, meta.direction, meta.patient))
            args.extend((message_id, meta.direction or "", meta.patient or ""))
        if not candidates:
            return result
        with translate_errors("expire records"):
            outcomes, freed = self._expire(keys=keys, args=args)
        result.bytes = int(freed)
        for message_id, outcome in zip(candidates, outcomes):
            outcome = outcome.decode()
            if outcome == "expired":
                result.expired.append(message_id)
            else:
                setattr(result, outcome, getattr(result, outcome) + 1)
        return result

    def forget(self, message_ids, patient):
        """Remove the records of ``message_ids`` that belong to ``patient``, leaving a marker
        without content or patient so no channel stores them again; the ids removed.

        Two round trips over ``len(message_ids)`` records (the caller bounds the batch).
        """
        with translate_errors("read records to forget"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hget(self.keys.msg(message_id), "m")
            rows = pipe.execute()
        keys, args, candidates = [self.keys.stats, self.keys.idx_all], [patient], []
        for message_id, meta in zip(message_ids, rows):
            if meta is None:  # unknown, or forgotten; a tombstone names no patient
                continue
            meta = Meta.unpack(meta.decode())
            if meta.patient != patient:
                continue
            candidates.append(message_id)
            keys.extend(self._record_keys(message_id, meta.direction, meta.patient))
            args.extend((message_id, meta.direction or ""))
        if not candidates:
            return []
        with translate_errors("forget records"):
            removed = self._forget(keys=keys, args=args)
        return [message_id for message_id, done in zip(candidates, removed) if done]

    def reindex(self, message_ids):
        """Add the live records of ``message_ids`` to their indexes (after a restore: indexes
        are derived from the records, so a backup does not carry them); how many were indexed."""
        with translate_errors("read records to index"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hmget(self.keys.msg(message_id), "m", "x")
            rows = pipe.execute()
        indexed = 0
        with translate_errors("index records"):
            pipe = self.client.pipeline(transaction=False)
            for message_id, (meta, gone) in zip(message_ids, rows):
                if meta is None or gone is not None:
                    continue
                meta = Meta.unpack(meta.decode())
                pipe.zadd(self.keys.idx_all, {message_id: 0})
                if meta.direction:
                    pipe.zadd(self.keys.idx_direction(meta.direction), {message_id: 0})
                if meta.patient:
                    pipe.zadd(self.keys.idx_patient(meta.patient), {message_id: 0})
                indexed += 1
            pipe.execute()
        return indexed

    def _record_keys(self, message_id, direction, patient):
        """The record key and its index keys (``idx:all`` standing in for a missing one)."""
        return (
            self.keys.msg(message_id),
            self.keys.idx_direction(direction) if direction else self.keys.idx_all,
            self.keys.idx_patient(patient) if patient else self.keys.idx_all,
        )

    def get(self, message_id):
        """The stored message ``message_id``, or None if unknown."""
        return self.get_many([message_id])[0]

    def get_many(self, message_ids):
        """Stored messages for ``message_ids`` in one round trip; None where unknown.

        Raises ``DecryptionError`` for a record that cannot be opened.
        """
        with translate_errors("read messages"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hgetall(self.keys.msg(message_id))
            rows = pipe.execute()
        # a record without its blob is a tombstone (expired): unknown to readers, like Metriport
        return [self._stored(i, row) if b"r" in row else None for i, row in zip(message_ids, rows)]

    def routing_many(self, message_ids):
        """``(direction, patient)`` of each message, None where unknown, without opening resources.

        Cheap enough to filter or count whole indexes (the mirror's ``itemsInTotal``).
        """
        with translate_errors("read message routing"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hget(self.keys.msg(message_id), "m")
            rows = pipe.execute()
        routing = []
        for meta in rows:
            if meta is None:
                routing.append(None)
                continue
            routing.append(unpack_routing(meta.decode()))
        return routing

    def _stored(self, message_id, row):
        meta = Meta.unpack(row[b"m"].decode())
        return StoredMessage(
            id=message_id,
            resource=json.loads(self.vault.open(message_id, row[b"r"])),
            **vars(meta),
        )

    def index_key(self, direction=None, patient=None):
        """The sorted set listing ids for a filter (the patient index when a patient is given)."""
        if patient:
            return self.keys.idx_patient(patient)
        if direction:
            return self.keys.idx_direction(direction)
        return self.keys.idx_all

    def ids(self, index_key, start=None, count=50, descending=True):
        """Up to ``count`` ids of ``index_key`` from ``start`` (inclusive), by id.

        Descending is Metriport's listing order (newest first for time-ordered ids); ascending
        serves ``toItem`` cursors. Inserts during a walk never shift it: the cursor is an id.
        """
        if descending:
            high, low = (f"[{start}" if start else "+"), "-"
            args = dict(start=high, end=low, desc=True)
        else:
            args = dict(start=f"[{start}" if start else "-", end="+")
        with translate_errors("list messages"):
            rows = self.client.zrange(index_key, bylex=True, offset=0, num=count, **args)
        return [row.decode() for row in rows]

    def count(self, index_key):
        """How many ids ``index_key`` holds."""
        with translate_errors("count messages"):
            return self.client.zcard(index_key)

    def stats(self):
        """The shared counters, as ``{name: int}``."""
        with translate_errors("read counters"):
            raw = self.client.hgetall(self.keys.stats)
        return {name.decode(): int(value) for name, value in raw.items()}

    def count_event(self, name, by=1):
        """Add ``by`` to the shared counter ``name`` (e.g. ``rejected:signature_mismatch``)."""
        with translate_errors("count an event"):
            self.client.hincrby(self.keys.stats, name, by)
