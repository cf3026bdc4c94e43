"""The message store: one atomic Lua upsert per message or page, and the reads around it.

Both ways in (webhooks, reconciliation) end in ``Store.upsert``; the feed stream is written by
the same script call, so the store and the feed always agree. Redis failures surface as
``StoreUnavailable`` (translated in ``inbox.connection``), never as redis-py exceptions.
"""

import dataclasses
import enum
import importlib.resources
import json
import logging
import time

from inbox.connection import Connections
from inbox.connection import is_cluster_url
from inbox.connection import translate_errors
from inbox.crypto import Vault
from inbox.errors import DecryptionError
from inbox.errors import InvalidMessage
from inbox.errors import StoreUnavailable
from inbox.groupcommit import GroupCommit
from inbox.rediskeys import RedisKeys
from inbox.normalize import MEANING_VERSION
from inbox.normalize import normalize
from inbox.normalize import status_code
from inbox.record import Digest
from inbox.record import Meta
from inbox.record import lua_prelude
from inbox.record import unpack_routing

log = logging.getLogger("inbox.store")

#: how long a webhook delivery id is remembered (Metriport's manual retries come within days)
LEDGER_TTL_SECONDS = 30 * 24 * 3600
#: how often records whose stored digest cannot be compared are settled again (see ``upsert``)
RECHECK_ATTEMPTS = 3


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
    """Outcomes of one upsert, in the order of the records; ``replay`` if the ledger hit;
    ``lock_lost`` if a page's lock was no longer its walk's (nothing written); ``round_trips``
    the script calls it took (1, or 3 when stored digests had to be rechecked)."""

    outcomes: tuple = ()
    replay: bool = False
    lock_lost: bool = False
    round_trips: int = 1

    def counts(self):
        """``{"created": n, "updated": n, "duplicates": n, "stale": n}`` for summaries."""
        outcomes = self.outcomes  # tuple.count compares by identity first: no enum hashing
        return {
            "created": outcomes.count(Outcome.CREATED),
            "updated": outcomes.count(Outcome.UPDATED),
            "duplicates": outcomes.count(Outcome.DUPLICATE),
            "stale": outcomes.count(Outcome.STALE),
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
class Page:
    """What a reconciliation page writes with its records, in the same script call.

    The walk of ``direction`` moves its checkpoint to ``checkpoint`` (None: the walk ended, the
    checkpoint is deleted; with ``keep_if_changed`` it is deleted too when the page created or
    updated nothing, as an incremental walk then stops), adds ``counters`` (name: count) and the
    page's creations as ``repaired``, and renews the lock held by ``lock_token``; all of it only
    while that token still holds the lock.
    """

    direction: str
    checkpoint: str | None
    checkpoint_ttl_ms: int
    lock_token: str
    lock_ttl_ms: int
    counters: dict = dataclasses.field(default_factory=dict)
    keep_if_changed: bool = False


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Records made ready for one upsert call (``Store.prepare``): their digests, their sealed
    resources, and their part of the script's KEYS and ARGV.

    Worked out apart from the call so a caller can do it in another thread while Redis is busy
    with the previous call: the reconcile read-ahead prepares the next page this way.
    """

    records: tuple
    digests: tuple
    #: each record's resource as stored (compressed, sealed): a recheck call sends it again as is
    blobs: tuple
    keys: tuple
    args: tuple


@dataclasses.dataclass(frozen=True)
class StoredMessage(Meta):
    """A record as the store holds it: its packed fields, and the resource opened and parsed."""

    id: str
    resource: dict


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """A stored record that cannot be opened (key not in the ring, tampered, not JSON), and why."""

    id: str
    code: str


def _age(meta):
    """The time retention measures for a record: the later of its message time (else when it
    was first seen) and its as-of, so a status change inside the window keeps a message."""
    return max(meta.first_seen if meta.message_time is None else meta.message_time, meta.as_of)


def _live(row):
    """True for a record that holds its resource: not unknown, expired (a tombstone, unknown to
    readers as it would be to Metriport) or forgotten."""
    return bool(row) and b"r" in row


def load_script(name):
    """The text of ``inbox/scripts/<name>.lua``."""
    return importlib.resources.files("inbox").joinpath("scripts", f"{name}.lua").read_text()


def load_record_script(name):
    """The text of a script that reads or writes records, after the record prelude."""
    return lua_prelude() + load_script(name)


class Store:
    """Records, indexes, feed and counters of one namespace on one Redis."""

    def __init__(self, settings, client=None, group_commit=False):
        """``group_commit``: send concurrent ``upsert`` calls of this process together
        (``inbox.groupcommit``; the receiver's choice); ignored on a Redis Cluster, whose client
        cannot pipeline scripts.
        """
        self.settings = settings
        self.redis_keys = RedisKeys(settings.namespace)
        self.vault = Vault(settings.encryption_keys)
        self.client = client if client is not None else Connections(settings).store
        self._upsert = self.client.register_script(load_record_script("messages_upsert"))
        #: the group commit of this store, or None: other per-request writes on the same client
        #: (the receiver's hourly counters) can join its batches (``GroupCommit.commands``)
        self.batch = None
        if group_commit and not is_cluster_url(settings.redis_url):
            self.batch = GroupCommit(self.client, self._upsert)
        self._upsert_call = self.batch or self._upsert
        self._status = self.client.register_script(load_record_script("message_status"))
        self._unindex = self.client.register_script(load_record_script("patient_unindex"))
        self._expire = self.client.register_script(load_record_script("messages_expire"))
        self._forget = self.client.register_script(load_record_script("messages_forget"))
        self._reseal = self.client.register_script(load_script("record_reseal"))
        self._lock_release = self.client.register_script(load_script("lock_release"))

    def pipeline(self, transaction=False):
        """A pipeline to batch store calls into one round trip (pass it as their ``pipeline=``).

        Calls given a pipeline only queue their command; the caller sends them with
        ``execute()`` inside ``translate_errors``. On Redis Cluster a pipeline must not carry
        the Lua scripts (EVALSHA) unless every key is in one slot, as ours are.
        """
        return self.client.pipeline(transaction=transaction)

    def body_hash(self, body):
        """A keyed hash of the exact bytes of a webhook body (keyed: it cannot confirm a guess)."""
        return self.vault.digest(body)

    def delivery(self, delivery_id, body):
        """The ``Delivery`` of a webhook body: its id and ``body_hash``."""
        return Delivery(delivery_id, self.body_hash(body))

    def upsert(self, records, via, delivery=None, page=None):
        """Record ``records`` (normalized, or ``Prepared`` by ``prepare``) in one atomic call; a
        ``Result`` in the same order.

        With a ``delivery``, a replay of the same delivery id and body is answered
        ``Result(replay=True)`` without touching any record. With a ``page`` (see ``Page``) the
        same call moves the walk's checkpoint and renews its lock: one round trip per page,
        also on a Redis Cluster; ``Result(lock_lost=True)`` when the lock is no longer its own.

        A stored record whose digest no key of the ring can reproduce (stored in clear before
        keys were set, under a retired key, or before digests were tagged) is answered "recheck"
        by the script: its resource is opened and compared here, and the script is called again
        for those records with the verdict. That costs two more round trips, once per record
        after a key change; every later call compares digests alone.
        """
        via = Via(via)
        prepared = records if isinstance(records, Prepared) else self.prepare(records)
        records, digests, blobs = prepared.records, prepared.digests, prepared.blobs
        round_trips = 1
        with translate_errors("store messages"):
            outcomes = self._call_upsert(prepared, via, delivery, page)
            for _ in range(RECHECK_ATTEMPTS):
                if outcomes in ("replay", "lock_lost"):
                    return Result(replay=outcomes == "replay", lock_lost=outcomes == "lock_lost",
                                  round_trips=round_trips)
                pending = [i for i, outcome in enumerate(outcomes) if outcome == "recheck"]
                if not pending:
                    break
                markers = self._recheck([records[i] for i in pending],
                                        [digests[i][0] for i in pending])
                settled = self._call_upsert(
                    self._prepare([records[i] for i in pending],
                                  [digests[i] + marker for i, marker in zip(pending, markers)],
                                  [blobs[i] for i in pending]),
                    via, delivery, page)
                round_trips += 2
                if settled == "lock_lost":
                    return Result(lock_lost=True, round_trips=round_trips)
                if settled == "replay":  # a concurrent copy of this delivery settled them first
                    settled = [Outcome.DUPLICATE.value] * len(pending)
                for i, outcome in zip(pending, settled):
                    outcomes[i] = outcome
        if "recheck" in outcomes:
            log.warning("store: %d records kept changing their digest key; left as they are",
                        outcomes.count("recheck"))
            outcomes = [Outcome.STALE.value if o == "recheck" else o for o in outcomes]
        return Result(outcomes=tuple(Outcome(outcome) for outcome in outcomes),
                      round_trips=round_trips)

    def prepare(self, records):
        """``records`` (normalized) made ready for ``upsert``: ``Prepared``."""
        records = tuple(records)
        return self._prepare(records,
                             [self.vault.digests(record.meaning, MEANING_VERSION) for record in records],
                             [self.vault.seal(record.id, record.body) for record in records])

    def _prepare(self, records, digests, blobs):
        keys, args = [], []
        for record, record_digests, blob in zip(records, digests, blobs):
            keys.append(self.redis_keys.msg(record.id))
            keys.append(self.redis_keys.idx_direction(record.direction) if record.direction else self.redis_keys.idx_all)
            keys.append(self.redis_keys.idx_patient(record.patient) if record.patient else self.redis_keys.idx_all)
            args.extend((
                record.id,
                blob,
                # the script's per-message fields in one argument (messages_upsert.lua, ARGV)
                f"{','.join(record_digests)}|{int(record.shape)}|{record.direction or ''}|"
                f"{record.patient or ''}|{record.status or ''}|"
                f"{'' if record.message_time is None else record.message_time}|{record.as_of}",
            ))
        return Prepared(tuple(records), tuple(digests), tuple(blobs), tuple(keys), tuple(args))

    def _call_upsert(self, prepared, via, delivery, page):
        """One script call: the outcome words in order, or "replay" / "lock_lost"."""
        keys = [self.redis_keys.feed, self.redis_keys.stats, self.redis_keys.idx_all]
        keys.append(self.redis_keys.delivery(delivery.id) if delivery else self.redis_keys.stats)
        keys.append(self.redis_keys.reconcile_cursor(page.direction) if page else self.redis_keys.stats)
        keys.append(self.redis_keys.reconcile_lock if page else self.redis_keys.stats)
        args = [
            via.value,
            int(time.time() * 1000),
            self.settings.feed_maxlen,
            delivery.body_hash if delivery else "",
            LEDGER_TTL_SECONDS,
        ]
        if page:
            counters = ",".join(f"{name},{count}" for name, count in page.counters.items())
            args.extend((page.lock_token, page.lock_ttl_ms, page.checkpoint or "",
                         page.checkpoint_ttl_ms, counters,
                         "changed" if page.keep_if_changed else ""))
        else:
            args.extend(("", 0, "", 0, "", ""))
        keys.extend(prepared.keys)
        args.extend(prepared.args)
        reply = self._upsert_call(keys=keys, args=args)
        if reply in (b"replay", b"lock_lost"):
            return reply.decode()
        outcomes, moved = reply
        if moved:
            self._unindex_moved(moved)
        return [outcome.decode() for outcome in outcomes]

    def _recheck(self, records, current):
        """The verdict marker for each stored record the script could not compare (see upsert).

        ``=<shape><h>`` when the stored resource means the same as the incoming one (or cannot
        be opened: then status and as-of decide, and shape 0 lets the readable copy replace it),
        ``!<h>`` when it means something else; no marker when the record has vanished.
        """
        pipe = self.client.pipeline(transaction=False)
        for record in records:
            pipe.hmget(self.redis_keys.msg(record.id), "r", "h", "m")
        markers = []
        for record, digest, (blob, stored_h, meta) in zip(records, current, pipe.execute()):
            if stored_h is None:
                markers.append([])
                continue
            stored_h = stored_h.decode()
            if blob is None:  # a tombstone (expired): nothing to open, status and as-of decide
                markers.append([f"=0{stored_h}"])
                continue
            tagged = Digest.unpack(stored_h)
            try:
                direction = Meta.unpack(meta.decode()).direction
                stored = normalize(json.loads(self.vault.open(record.id, blob)), direction)
            except (DecryptionError, InvalidMessage, ValueError):
                markers.append([f"=0{stored_h}"])
                continue
            if self.vault.digests(stored.meaning, MEANING_VERSION)[0] != digest:
                markers.append([f"!{stored_h}"])
                continue
            shape = tagged.shape if tagged else int(stored.shape)
            markers.append([f"={shape}{stored_h}"])
        return markers

    def replayed(self, delivery):
        """True when the ledger already holds ``delivery`` (same id, same body hash).

        The upsert answers a replay by itself; this is for a delivery whose work happens
        before the upsert (queueing fetches of id-only messages), so that a replay queues none.
        """
        with translate_errors("check the delivery ledger"):
            held = self.client.get(self.redis_keys.delivery(delivery.id))
        return held is not None and held.decode() == delivery.body_hash

    def apply_status(self, message_id, status, as_of, via=Via.WEBHOOK):
        """Apply a delivery status (``message.status``) to a stored message.

        Returns the ``Outcome``, or None when the message is not stored yet (the caller then
        fetches it). The resource stays as received; the canonical one follows by fetch.
        Raises ``InvalidMessage`` (``invalid_status``) for a status that is not a code.
        """
        if status_code(status) is None:
            raise InvalidMessage("The status must be a code such as completed or failed.",
                                 "invalid_status")
        keys = [self.redis_keys.msg(message_id), self.redis_keys.feed, self.redis_keys.stats]
        args = [message_id, Via(via).value, int(time.time() * 1000), self.settings.feed_maxlen,
                status, as_of or 0]
        with translate_errors("apply a message status"):
            reply = self._status(keys=keys, args=args).decode()
        return None if reply == "unknown" else Outcome(reply)

    def _unindex_moved(self, moved):
        """Drop ids from the patient index they left (a message re-linked to another patient)."""
        for message_id, old_patient in zip(moved[::2], moved[1::2]):
            message_id = message_id.decode()
            keys = [self.redis_keys.msg(message_id), self.redis_keys.idx_patient(old_patient.decode())]
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
                pipe.hmget(self.redis_keys.msg(message_id), "m", "e")
            rows = pipe.execute()
        keys = [self.redis_keys.feed, self.redis_keys.stats, self.redis_keys.idx_all]
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
                pipe.hget(self.redis_keys.msg(message_id), "m")
            rows = pipe.execute()
        keys, args, candidates = [self.redis_keys.stats, self.redis_keys.idx_all], [patient], []
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
                pipe.hmget(self.redis_keys.msg(message_id), "m", "e")
            rows = pipe.execute()
        indexed = 0
        with translate_errors("index records"):
            pipe = self.client.pipeline(transaction=False)
            for message_id, (meta, gone) in zip(message_ids, rows):
                if meta is None or gone is not None:
                    continue
                meta = Meta.unpack(meta.decode())
                pipe.zadd(self.redis_keys.idx_all, {message_id: 0})
                if meta.direction:
                    pipe.zadd(self.redis_keys.idx_direction(meta.direction), {message_id: 0})
                if meta.patient:
                    pipe.zadd(self.redis_keys.idx_patient(meta.patient), {message_id: 0})
                indexed += 1
            pipe.execute()
        return indexed

    def _record_keys(self, message_id, direction, patient):
        """The record key and its index keys (``idx:all`` standing in for a missing one)."""
        return (
            self.redis_keys.msg(message_id),
            self.redis_keys.idx_direction(direction) if direction else self.redis_keys.idx_all,
            self.redis_keys.idx_patient(patient) if patient else self.redis_keys.idx_all,
        )

    def get(self, message_id):
        """The stored message ``message_id``, or None if unknown."""
        return self.get_many([message_id])[0]

    def get_many(self, message_ids):
        """Stored messages for ``message_ids`` in one round trip; None where unknown.

        Raises ``DecryptionError`` for a record that cannot be opened.
        """
        stored = []
        for message_id, row in zip(message_ids, self._rows(message_ids)):
            try:
                stored.append(self._stored(message_id, row) if _live(row) else None)
            except DecryptionError:
                self._note_unreadable(message_id)
                raise
        return stored

    def open_many(self, message_ids):
        """Like ``get_many``, but a record that cannot be opened comes back as ``Unreadable``.

        One record sealed under a key no longer in the ring must not hide the others.
        """
        opened = []
        for message_id, row in zip(message_ids, self._rows(message_ids)):
            try:
                opened.append(self._stored(message_id, row) if _live(row) else None)
            except DecryptionError as exc:
                self._note_unreadable(message_id)
                opened.append(Unreadable(message_id, exc.code))
            except ValueError:  # opened, but not JSON
                opened.append(Unreadable(message_id, "record_unreadable"))
        return opened

    def _rows(self, message_ids):
        with translate_errors("read messages"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hgetall(self.redis_keys.msg(message_id))
            return pipe.execute()

    def _note_unreadable(self, message_id):
        """Remember a record that failed to open, for the console and metrics (best effort)."""
        try:
            with translate_errors("note an unreadable record"):
                self.client.sadd(self.redis_keys.unreadable, message_id)
        except StoreUnavailable:
            pass

    def unreadable(self, limit=1000):
        """Ids of records that failed to open and still do (each one tried again now).

        Reads add ids as they fail (``get_many``); a record since rewritten, resealed by ``rekey``
        or deleted is dropped from the set here, so the count heals by itself.
        """
        with translate_errors("read unreadable records"):
            _, members = self.client.sscan(self.redis_keys.unreadable, 0, count=limit)
            ids = sorted(m.decode() for m in members)[:limit]
            pipe = self.client.pipeline(transaction=False)
            for message_id in ids:
                pipe.hget(self.redis_keys.msg(message_id), "r")
            blobs = pipe.execute()
        still, healed = [], []
        for message_id, blob in zip(ids, blobs):
            try:
                if blob is None:
                    raise LookupError
                self.vault.open(message_id, blob)
                healed.append(message_id)
            except DecryptionError:
                still.append(message_id)
            except LookupError:
                healed.append(message_id)
        if healed:
            with translate_errors("update unreadable records"):
                self.client.srem(self.redis_keys.unreadable, *healed)
        return still

    def history(self, message_id):
        """``(exists, history text)`` of a record: its field ``x`` (``inbox.history`` parses it).

        A tombstone's expiry is told by its field ``e`` (when retention expired it), not written
        into ``x``: an ``expired`` event is put in front here, so ``trace`` says why the mirror
        answers 404 without a tombstone holding more bytes."""
        with translate_errors("read a message's history"):
            meta, text, gone = self.client.hmget(self.redis_keys.msg(message_id), "m", "x", "e")
        text = text.decode() if text else ""
        if meta is not None and gone is not None and gone.isdigit():
            record = Meta.unpack(meta.decode())
            expired = f"{gone.decode()}|expired|retention|{record.version}|{record.status or ''}"
            text = f"{expired};{text}" if text else expired
        return meta is not None, text

    def routing_many(self, message_ids):
        """``(direction, patient)`` of each message, None where unknown, without opening resources.

        Cheap enough to filter or count whole indexes (the mirror's ``itemsInTotal``).
        """
        with translate_errors("read message routing"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hget(self.redis_keys.msg(message_id), "m")
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
            return self.redis_keys.idx_patient(patient)
        if direction:
            return self.redis_keys.idx_direction(direction)
        return self.redis_keys.idx_all

    def ids(self, index_key, start=None, count=50, descending=True, inclusive=True):
        """Up to ``count`` ids of ``index_key`` from ``start`` (inclusive unless told), by id.

        Descending is Metriport's listing order (newest first for time-ordered ids); ascending
        serves ``toItem`` cursors. Inserts during a walk never shift it: the cursor is an id.
        """
        bound = f"{'[' if inclusive else '('}{start}" if start else None
        if descending:
            args = dict(start=bound or "+", end="-", desc=True)
        else:
            args = dict(start=bound or "-", end="+")
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
            raw = self.client.hgetall(self.redis_keys.stats)
        return {name.decode(): int(value) for name, value in raw.items()}

    def count_event(self, name, by=1, pipeline=None):
        """Add ``by`` to the shared counter ``name`` (e.g. ``rejected:signature_mismatch``)."""
        if pipeline is not None:
            pipeline.hincrby(self.redis_keys.stats, name, by)
            return
        with translate_errors("count an event"):
            self.client.hincrby(self.redis_keys.stats, name, by)

    def ping(self):
        """Raise ``StoreUnavailable`` unless Redis answers."""
        with translate_errors("reach the store"):
            self.client.ping()

    def probe_write(self, ttl_ms):
        """Write the short-lived readiness key: ``StoreFull`` when Redis is at maxmemory, which
        still answers PING but refuses every webhook; ``StoreUnavailable`` when it is down."""
        with translate_errors("check readiness"):
            self.client.set(self.redis_keys.readiness, "1", px=ttl_ms)

    # -- re-encryption (``inbox.rekey``) --------------------------------------------------------

    @property
    def encryption_kid(self):
        """The id of the key new records are sealed under; None when encryption is off."""
        return self.vault.current_kid if self.vault.enabled else None

    def sealed_many(self, message_ids):
        """``(blob, digest, meta)`` of each record as stored, Nones where gone; one round trip."""
        with translate_errors("read sealed records"):
            pipe = self.client.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.hmget(self.redis_keys.msg(message_id), "r", "h", "m")
            return [tuple(row) for row in pipe.execute()]

    def is_current(self, blob):
        """True when ``blob`` is already sealed under the ring's current key."""
        return self.vault.is_current(blob)

    def resealed(self, message_id, blob, digest, meta):
        """``(blob, digest)`` of a stored record sealed again under the current key.

        The digest is of the same meaning under the current key, with the stored shape rank.
        Raises ``DecryptionError`` when it does not open, ``ValueError`` or ``InvalidMessage``
        when what it holds is not a message.
        """
        plaintext = self.vault.open(message_id, blob)
        record = normalize(json.loads(plaintext), Meta.unpack(meta.decode()).direction)
        stored = Digest.unpack(digest.decode())
        shape = stored.shape if stored else int(record.shape)
        entry = self.vault.digests(record.meaning, MEANING_VERSION)[0]
        return self.vault.seal(message_id, plaintext), Digest(shape, entry).pack()

    def replace_sealed(self, writes):
        """Write ``(id, digest read, new blob, new digest)`` rows back, each only if unchanged.

        One script call (a Redis Cluster client refuses to pipeline scripts); a list of booleans
        in the order of ``writes`` (False: the record changed or vanished since it was read,
        nothing written).
        """
        if not writes:
            return []
        with translate_errors("write resealed records"):
            replies = self._reseal(keys=[self.redis_keys.msg(w[0]) for w in writes],
                                   args=[arg for w in writes for arg in w[1:]])
        return [bool(reply) for reply in replies]

    def rekey_cursor(self):
        """``(kid, after)`` saved by an interrupted rekey run, or ``(None, None)``."""
        with translate_errors("read the rekey cursor"):
            saved = self.client.hgetall(self.redis_keys.rekey_cursor)
        return (saved.get(b"kid", b"").decode() or None, saved.get(b"after", b"").decode() or None)

    def save_rekey_cursor(self, kid, after):
        with translate_errors("save the rekey cursor"):
            self.client.hset(self.redis_keys.rekey_cursor, mapping={"kid": kid, "after": after})

    def clear_rekey_cursor(self):
        with translate_errors("clear the rekey cursor"):
            self.client.delete(self.redis_keys.rekey_cursor)

    def record_batches(self, batch):
        """Every stored message id (live, expired or forgotten), in lists of about ``batch``
        (SCAN: each call is bounded; a record written during the walk may or may not be seen)."""
        pattern = self.redis_keys.pattern().replace("*", "msg:*")
        prefix = len(self.redis_keys.msg(""))
        ids = []
        with translate_errors("list stored records"):
            for key in self.client.scan_iter(match=pattern, count=batch):
                ids.append(key.decode()[prefix:])
                if len(ids) >= batch:
                    yield ids
                    ids = []
        if ids:
            yield ids

    # -- retention (``inbox.retention``) ---------------------------------------------------------

    def expiry_cursor(self):
        """The last id an interrupted expiry run finished, or None."""
        with translate_errors("read the expiry cursor"):
            saved = self.client.get(self.redis_keys.expire_cursor)
        return saved.decode() if saved else None

    def save_expiry_cursor(self, after):
        """Remember ``after`` as done; None clears the cursor (the walk is complete)."""
        with translate_errors("save the expiry cursor"):
            if after is None:
                self.client.delete(self.redis_keys.expire_cursor)
            else:
                self.client.set(self.redis_keys.expire_cursor, after)

    # -- reconciliation: lock, checkpoints, walks and runs (``worker.reconcile``) -------------

    def lock_take(self, token, ttl_ms):
        """Take the reconciliation lock for ``token`` if nobody holds it; True when taken."""
        with translate_errors("take the reconciliation lock"):
            return bool(self.client.set(self.redis_keys.reconcile_lock, token, nx=True, px=ttl_ms))

    def lock_release(self, token, handoff=False):
        """Delete the lock if ``token`` still holds it: 1 when it did, 0 when it did not.

        With ``handoff``, a pending request for another walk (``request_rerun``) is taken
        instead and the lock kept: 2.
        """
        with translate_errors("release the reconciliation lock"):
            return int(self._lock_release(keys=[self.redis_keys.reconcile_lock, self.redis_keys.reconcile_again],
                                          args=[token, "handoff" if handoff else ""]))

    def request_rerun(self, ttl_ms):
        """Ask the run holding the lock to walk once more before it releases (``lock_release``)."""
        with translate_errors("ask for another reconcile walk"):
            self.client.set(self.redis_keys.reconcile_again, 1, px=ttl_ms)

    def clear_rerun(self):
        """Forget requests for another walk: a run that starts walking now satisfies them."""
        with translate_errors("clear reconcile requests"):
            self.client.delete(self.redis_keys.reconcile_again)

    def claim_soon_run(self, ttl_ms):
        """True when no immediate run is queued yet and this caller now queues it (debounce)."""
        with translate_errors("debounce the immediate reconcile run"):
            return bool(self.client.set(self.redis_keys.reconcile_soon, 1, nx=True, px=ttl_ms))

    def clear_soon_run(self):
        """The immediate run has started (or was not queued): the next request queues another."""
        with translate_errors("clear the immediate reconcile run"):
            self.client.delete(self.redis_keys.reconcile_soon)

    # -- webhook bodies that could not be read (see receiver/webhook.py) -----------------------

    def quarantine(self, quarantine_id, body, reason, ttl_seconds):
        """Keep a signed body whose message could not be read, sealed, for ``ttl_seconds``.

        The body is encrypted when keys are set (the id is its associated data) and never
        logged; ``unreadable:<reason>`` is counted in the same round trip.
        """
        key = self.redis_keys.unreadable_webhook(quarantine_id)
        with translate_errors("keep an unreadable webhook body"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, mapping={"r": self.vault.seal(quarantine_id, body), "why": reason,
                                    "at": int(time.time() * 1000), "n": len(body)})
            pipe.expire(key, ttl_seconds)
            pipe.hincrby(self.redis_keys.stats, f"unreadable:{reason}", 1)
            pipe.execute()

    def quarantined(self):
        """``[(id, reason, at ms, bytes, ttl seconds)]`` of the kept bodies, oldest first."""
        prefix = self.redis_keys.unreadable_webhook("")
        with translate_errors("list unreadable webhook bodies"):
            keys = sorted(self.client.scan_iter(match=self.redis_keys.pattern_of(prefix), count=1000))
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(key, "why", "at", "n")
                pipe.ttl(key)
            rows = pipe.execute()
        found = []
        for index, key in enumerate(keys):
            (why, at, size), ttl = rows[2 * index:2 * index + 2]
            if why is not None:
                found.append((key.decode()[len(prefix):], why.decode(), int(at), int(size), ttl))
        return sorted(found, key=lambda row: row[2])

    def quarantined_body(self, quarantine_id):
        """The opened body kept as ``quarantine_id``, or None when it is gone (expired)."""
        with translate_errors("read an unreadable webhook body"):
            blob = self.client.hget(self.redis_keys.unreadable_webhook(quarantine_id), "r")
        return None if blob is None else self.vault.open(quarantine_id, blob)

    def checkpoint(self, direction):
        """The text a walk of ``direction`` saved to resume from, or None."""
        with translate_errors("read the reconcile checkpoint"):
            return self.client.get(self.redis_keys.reconcile_cursor(direction))

    def last_full_walk(self, direction):
        """When the last complete full walk of ``direction`` ended (ms), or None."""
        with translate_errors("read the reconcile state"):
            value = self.client.hget(self.redis_keys.reconcile_state, f"full:{direction}")
        return None if value is None else int(value)

    def save_full_walk(self, direction, ended_ms, pipeline=None):
        client = pipeline if pipeline is not None else self.client
        with translate_errors("save the reconcile state"):
            client.hset(self.redis_keys.reconcile_state, f"full:{direction}", ended_ms)

    def append_run(self, text, keep, state, pipeline=None):
        """Push a run record on the run list (capped at ``keep``) and ``state`` on the state hash."""
        pipe = pipeline if pipeline is not None else self.client.pipeline(transaction=False)
        pipe.lpush(self.redis_keys.reconcile_runs, text)
        pipe.ltrim(self.redis_keys.reconcile_runs, 0, keep - 1)
        pipe.hset(self.redis_keys.reconcile_state, mapping=state)
        if pipeline is None:
            with translate_errors("record the run"):
                pipe.execute()

    def runs(self, limit):
        """The newest ``limit`` run records as stored (text), newest first."""
        with translate_errors("read reconcile runs"):
            if self.client.type(self.redis_keys.reconcile_runs) != b"list":
                return []
            return [row.decode() for row in self.client.lrange(self.redis_keys.reconcile_runs, 0, limit - 1)]
