"""Re-encrypt every stored record under the ring's current key, so an old key can be retired.

The walk follows ``{ns}:idx:all`` by id in bounded batches and remembers the last id done in
``{ns}:rekey:cursor`` (with the key id it was working towards), so an interrupted run resumes
where it stopped. Each record is written back by ``record_reseal.lua`` only if its digest is
still the one that was read: a version stored meanwhile by a live upsert is never overwritten.
Records that changed are read again (a few times); records that do not open are reported by id.
"""

import dataclasses
import json

from inbox.connection import translate_errors
from inbox.errors import ConfigError
from inbox.errors import DecryptionError
from inbox.errors import InvalidMessage
from inbox.normalize import MEANING_VERSION
from inbox.normalize import normalize
from inbox.record import Digest
from inbox.record import Meta
from inbox.store import load_script

#: records read and rewritten per round trip
DEFAULT_BATCH = 200
#: how often a record that keeps changing under us is read again before it is left to the next run
ATTEMPTS = 3


@dataclasses.dataclass
class Progress:
    """Where a rekey run stands; updated after every batch and returned at the end."""

    kid: str
    total: int
    resumed_after: str | None = None
    scanned: int = 0
    resealed: int = 0
    current: int = 0
    vanished: int = 0
    retried: int = 0
    busy: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)
    done: bool = False

    def line(self):
        """One progress line: counts only, never content."""
        return (
            f"rekey to {self.kid}: {self.scanned}/{self.total} scanned, {self.resealed} resealed, "
            f"{self.current} already current, {self.retried} changed meanwhile and re-read, "
            f"{len(self.busy)} busy, {len(self.failed)} failed"
        )


def rekey(store, batch=DEFAULT_BATCH, on_batch=None):
    """Reseal every record of ``store`` under its vault's current key; the final ``Progress``.

    ``on_batch(progress)`` is called after each batch (the CLI prints a line). Safe while the
    service runs, if every process already has the new ring; safe to interrupt and run again.
    """
    vault = store.vault
    if not vault.enabled:
        raise ConfigError(
            "rekey needs INBOX_ENCRYPTION_KEYS: the new key first, then the old ones."
        )
    if batch <= 0:
        raise ValueError("batch must be positive")
    script = store.client.register_script(load_script("record_reseal"))
    after = _resume_point(store, vault.current_kid)
    progress = Progress(kid=vault.current_kid, total=store.count(store.keys.idx_all),
                        resumed_after=after)
    while True:
        with translate_errors("list messages to rekey"):
            ids = store.client.zrange(store.keys.idx_all, f"({after}" if after else "-", "+",
                                      bylex=True, offset=0, num=batch)
        if not ids:
            break
        ids = [i.decode() for i in ids]
        _reseal(store, script, ids, progress)
        after = ids[-1]
        with translate_errors("save the rekey cursor"):
            store.client.hset(store.keys.rekey_cursor,
                              mapping={"kid": progress.kid, "after": after})
        if on_batch is not None:
            on_batch(progress)
    with translate_errors("clear the rekey cursor"):
        store.client.delete(store.keys.rekey_cursor)
    progress.done = True
    return progress


def _resume_point(store, kid):
    """The last id a previous, interrupted run towards ``kid`` finished; None to start over."""
    with translate_errors("read the rekey cursor"):
        saved = store.client.hgetall(store.keys.rekey_cursor)
    if saved.get(b"kid", b"").decode() != kid:
        return None
    return saved.get(b"after", b"").decode() or None


def _reseal(store, script, ids, progress):
    """Reseal the records ``ids``: one read and one write round trip per attempt."""
    pending = ids
    progress.scanned += len(ids)
    for _ in range(ATTEMPTS):
        with translate_errors("read records to rekey"):
            pipe = store.client.pipeline(transaction=False)
            for message_id in pending:
                pipe.hmget(store.keys.msg(message_id), "r", "h", "m")
            rows = pipe.execute()
        writes = []
        for message_id, (blob, digest, meta) in zip(pending, rows):
            if blob is None or digest is None:
                progress.vanished += 1
            elif store.vault.is_current(blob):
                progress.current += 1
            else:
                resealed = _resealed(store.vault, message_id, blob, digest, meta, progress)
                if resealed is not None:
                    writes.append((message_id, digest, *resealed))
        replies = []
        if writes:
            with translate_errors("write resealed records"):
                replies = script(keys=[store.keys.msg(w[0]) for w in writes],
                                 args=[arg for w in writes for arg in w[1:]])
        progress.resealed += sum(replies)
        pending = [w[0] for w, ok in zip(writes, replies) if not ok]
        if not pending:
            return
        progress.retried += len(pending)
    progress.busy.extend(pending)


def _resealed(vault, message_id, blob, digest, meta, progress):
    """``(blob, digest)`` of a record under the current key, or None (recorded as failed).

    The digest is of the same meaning under the current key; the stored shape rank is kept.
    """
    try:
        plaintext = vault.open(message_id, blob)
        record = normalize(json.loads(plaintext), Meta.unpack(meta.decode()).direction)
    except DecryptionError as exc:
        progress.failed.append((message_id, exc.code))
        return None
    except (ValueError, InvalidMessage):
        progress.failed.append((message_id, "unreadable"))
        return None
    stored = Digest.unpack(digest.decode())
    shape = stored.shape if stored else int(record.shape)
    entry = vault.digests(record.meaning, MEANING_VERSION)[0]
    return vault.seal(message_id, plaintext), Digest(shape, entry).pack()
