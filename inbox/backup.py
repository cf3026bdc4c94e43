"""Backup and restore of one namespace: a consistent logical snapshot in a file, and back.

What a backup holds: every key of the namespace (records and tombstones, the feed with its
consumer groups, dead letters, counters, reconcile state and runs, the delivery ledger, the
audit trail, cursors) as Redis ``DUMP`` payloads, so encrypted blobs stay sealed and every type
round-trips exactly. What it leaves out: the RQ queue (not in the namespace), the reconcile lock
(a restored lock would hold off the next run) and the indexes, which are derived from the records
and rebuilt by ``restore``.

Consistency without stopping the service: the records are copied in bounded batches first, then
one atomic script (``namespace_snapshot.lua``) dumps the feed, the dead letters, the counters and
every record the feed says changed since the batches began. Every change to a record appends a
feed entry in the same atomic call, so the result is the namespace as it stood at that instant.
Records rewritten by ``rekey`` meanwhile may be copied under either key: both open the same.

The file is gzip'd JSON lines: a header, one line per key (name relative to the namespace,
remaining TTL, base64 payload), and a trailer with the key count and a SHA-256 of the key lines,
so a truncated or altered file is refused before anything is written. DUMP payloads carry the
RDB version: restore on the same or a newer Redis version.
"""

import base64
import dataclasses
import datetime
import gzip
import hashlib
import json
import os
import time

import redis

from inbox.connection import translate_errors
from inbox.errors import BackupError
from inbox.rediskeys import RedisKeys
from inbox.store import load_script

FORMAT = "metriport-inbox-backup"
VERSION = 1
#: keys dumped or restored per Redis round trip
BATCH = 200
#: tries of the closing atomic step before giving up (each try waits for a quieter moment)
ATTEMPTS = 50


@dataclasses.dataclass
class Summary:
    """What a backup wrote or a restore put back: counts only."""

    namespace: str
    keys: int = 0
    records: int = 0
    feed_entries: int = 0
    feed_position: str = ""
    indexed: int = 0
    created: str = ""

    def as_dict(self):
        return dataclasses.asdict(self)


def backup(client, namespace, path):
    """Write a snapshot of ``namespace`` on ``client`` to ``path``; a ``Summary``.

    The file appears under ``path`` only once complete (written to ``path.partial`` first).
    """
    keys = RedisKeys(namespace)
    summary = Summary(namespace=namespace, created=_iso(time.time()))
    partial = f"{path}.partial"
    digest = hashlib.sha256()
    version = _server_version(client, keys)
    try:
        with gzip.open(partial, "wt", encoding="utf-8") as out:
            out.write(json.dumps({"format": FORMAT, "version": VERSION, "namespace": namespace,
                                  "created": summary.created, "redis": version}) + "\n")

            def emit(name, payload, ttl):
                if payload is None:  # deleted meanwhile (an expired ledger entry)
                    return
                line = json.dumps({"key": name, "ttl": max(int(ttl), 0),
                                   "dump": base64.b64encode(payload).decode()}) + "\n"
                digest.update(line.encode())
                out.write(line)
                summary.keys += 1
                summary.records += name.startswith("msg:")

            since = _feed_tip(client, keys)
            closing = {"feed", "feed:dead", "stats"}
            batch = []
            with translate_errors("list the namespace's keys"):
                for key in client.scan_iter(match=keys.pattern(), count=1000):
                    name = _relative(keys, key)
                    if _skipped(name) or name in closing:
                        continue
                    batch.append(name)
                    if len(batch) == BATCH:
                        _copy(client, keys, batch, emit)
                        batch = []
            _copy(client, keys, batch, emit)
            _close(client, keys, since, closing, emit, summary)
            out.write(json.dumps({"end": True, "keys": summary.keys,
                                  "sha256": digest.hexdigest()}) + "\n")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return summary


def _copy(client, keys, names, emit):
    """Dump ``names`` in one round trip and write them out."""
    if not names:
        return
    with translate_errors("dump keys"):
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.dump(keys.prefix + ":" + name)
            pipe.pttl(keys.prefix + ":" + name)
        replies = pipe.execute()
    for name, payload, ttl in zip(names, replies[::2], replies[1::2]):
        emit(name, payload, ttl)


def _close(client, keys, since, closing, emit, summary):
    """The atomic closing step: feed, dead letters, counters and records changed since ``since``."""
    script = client.register_script(load_script("namespace_snapshot"))
    for _ in range(ATTEMPTS):
        tip = _feed_tip(client, keys)
        changed = _changed(client, keys, since, tip)
        if len(changed) > BATCH:  # catch up in batches, then close over what is left
            for start in range(0, len(changed), BATCH):
                _copy(client, keys, [f"msg:{i}" for i in changed[start:start + BATCH]], emit)
            since = tip
            continue
        names = ["feed", *sorted(closing - {"feed"}), *(f"msg:{i}" for i in changed)]
        with translate_errors("take the closing snapshot"):
            reply = script(keys=[keys.prefix + ":" + name for name in names], args=[tip])
        if reply[0] == b"moved":
            continue
        summary.feed_entries = int(reply[1])
        summary.feed_position = tip
        for name, payload, ttl in zip(names, reply[2::2], reply[3::2]):
            emit(name, payload or None, ttl)
        return
    raise BackupError(
        f"The feed kept changing through {ATTEMPTS} tries of the closing snapshot; "
        "run the backup at a quieter time.", "backup_busy")


def _changed(client, keys, since, tip):
    """Ids of messages with feed entries after ``since`` up to ``tip``, in bounded reads."""
    if not tip or tip == since:
        return []
    ids, start = set(), f"({since}" if since else "-"
    with translate_errors("read feed changes"):
        while True:
            rows = client.xrange(keys.feed, min=start, max=tip, count=1000)
            ids.update(fields[b"id"].decode() for _, fields in rows if b"id" in fields)
            if len(rows) < 1000:
                return sorted(ids)
            start = f"({rows[-1][0].decode()}"


def _feed_tip(client, keys):
    with translate_errors("read the feed position"):
        rows = client.xrevrange(keys.feed, count=1)
    return rows[0][0].decode() if rows else ""


def restore(client, namespace, path, reindex):
    """Put the snapshot in ``path`` into ``namespace`` on ``client``, which must hold no key of
    it; a ``Summary``. ``reindex(ids)`` rebuilds the indexes of a batch of records
    (``Store.reindex``).

    The whole file is verified first (format, key count, checksum), so a bad file writes nothing.
    """
    header = verify(path)
    keys = RedisKeys(namespace)
    summary = Summary(namespace=namespace, created=header["created"])
    with translate_errors("check that the namespace is empty"):
        occupied = next(iter(client.scan_iter(match=keys.pattern(), count=1000)), None)
    if occupied is not None:
        raise BackupError(
            f"Namespace {namespace} already holds keys: restore only into an empty namespace "
            "(or another INBOX_NAMESPACE).", "restore_target_not_empty")
    made, here = header.get("redis") or "", _server_version(client, keys)
    if made and here and _release(here) < _release(made):
        raise BackupError(
            f"{path} was taken on Redis {made} and this Redis is {here}: its DUMP payloads restore "
            "only on the same or a newer Redis release. Nothing was written.",
            "restore_redis_too_old")
    batch = []
    for entry in _entries(path):
        batch.append(entry)
        if len(batch) == BATCH:
            _put(client, keys, batch, summary)
            batch = []
    _put(client, keys, batch, summary)
    ids = []
    with translate_errors("list restored records"):
        for key in client.scan_iter(match=keys.pattern().replace("*", "msg:*"), count=1000):
            ids.append(_relative(keys, key)[len("msg:"):])
            summary.records += 1
            if len(ids) == BATCH:
                summary.indexed += reindex(ids)
                ids = []
    summary.indexed += reindex(ids) if ids else 0
    with translate_errors("read the restored feed"):
        summary.feed_entries = client.xlen(keys.feed)
    summary.feed_position = _feed_tip(client, keys)
    return summary


def _put(client, keys, entries, summary):
    """RESTORE ``entries`` in one round trip. A key seen twice in the file (a record copied again
    by the closing step) replaces its earlier copy: the later one is the snapshot's."""
    if not entries:
        return
    with translate_errors("restore keys"):
        pipe = client.pipeline(transaction=False)
        for entry in entries:
            pipe.restore(keys.prefix + ":" + entry["key"], entry["ttl"], entry["payload"],
                         replace=True)
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            # redis-py's message quotes the command, payload included: keep only Redis's reason
            reason = str(exc).rpartition("caused error: ")[2]
            raise BackupError(
                f"Redis refused a key of the backup ({reason}) after {summary.keys} keys were "
                "restored: empty the namespace before trying again.", "restore_refused") from None
    summary.keys += len(entries)


def verify(path):
    """The header of the backup file ``path`` after checking all of it; ``BackupError`` if not."""
    digest, count, header, trailer = hashlib.sha256(), 0, None, None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            header = json.loads(next(lines, "null"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise BackupError(f"{path} is not a metriport-inbox backup.", "backup_unreadable")
            if header.get("version") != VERSION:
                raise BackupError(f"{path} is a backup of format version "
                                  f"{header.get('version')}; this version reads {VERSION}.",
                                  "backup_unreadable")
            for line in lines:
                if trailer is not None:
                    raise BackupError(f"{path} has data after its end.", "backup_corrupt")
                if line.startswith('{"end"'):
                    trailer = json.loads(line)
                    continue
                digest.update(line.encode())
                count += 1
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} cannot be read as a backup ({type(exc).__name__}).",
                          "backup_unreadable") from exc
    if trailer is None:
        raise BackupError(f"{path} ends early: the backup is incomplete.", "backup_truncated")
    if trailer.get("keys") != count or trailer.get("sha256") != digest.hexdigest():
        raise BackupError(f"{path} does not match its checksum: the file was altered or damaged.",
                          "backup_corrupt")
    return header


def _entries(path):
    """The key lines of a verified backup file, payloads decoded."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            if line.startswith('{"end"'):
                return
            entry = json.loads(line)
            yield {"key": entry["key"], "ttl": entry["ttl"],
                   "payload": base64.b64decode(entry["dump"])}


def _server_version(client, keys):
    """``redis_version`` of the server holding the namespace (on a cluster, the master of its
    slot), or "" when it does not say."""
    with translate_errors("read the server version"):
        if isinstance(client, redis.RedisCluster):
            info = client.info("server", target_nodes=client.get_node_from_key(keys.feed))
        else:
            info = client.info("server")
    if "redis_version" not in info:  # a cluster client answers per node
        info = next(iter(info.values()), {}) if info else {}
    return str(info.get("redis_version", ""))


def _release(version):
    """(major, minor) of a Redis version string: what decides the DUMP format it reads."""
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]]
    return tuple(parts + [0] * (2 - len(parts)))


def _relative(keys, key):
    """``key`` (bytes) without its ``{ns}:`` prefix."""
    return key.decode()[len(keys.prefix) + 1:]


def _skipped(name):
    """Keys a backup leaves out: the indexes (rebuilt from the records) and the run lock."""
    return name.startswith("idx:") or name == "reconcile:lock"


def _iso(seconds):
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
