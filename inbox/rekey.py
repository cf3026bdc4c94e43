"""Re-encrypt every stored record under the ring's current key, so an old key can be retired.

The walk follows ``{ns}:idx:all`` by id in bounded batches and remembers the last id done in
``{ns}:rekey:cursor`` (with the key id it was working towards), so an interrupted run resumes
where it stopped. Each record is written back by ``record_reseal.lua`` only if its digest is
still the one that was read: a version stored meanwhile by a live upsert is never overwritten.
Records that changed are read again (a few times); records that do not open are reported by id.
"""

import dataclasses

from inbox.errors import ConfigError
from inbox.errors import DecryptionError
from inbox.errors import InvalidMessage

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
    """Reseal every record of ``store`` under its current encryption key; the final ``Progress``.

    ``on_batch(progress)`` is called after each batch (the CLI prints a line). Safe while the
    service runs, if every process already has the new ring; safe to interrupt and run again.
    """
    kid = store.encryption_kid
    if kid is None:
        raise ConfigError(
            "rekey needs INBOX_ENCRYPTION_KEYS: the new key first, then the old ones."
        )
    if batch <= 0:
        raise ValueError("batch must be positive")
    saved_kid, after = store.rekey_cursor()
    if saved_kid != kid:
        after = None
    every = store.index_key()
    progress = Progress(kid=kid, total=store.count(every), resumed_after=after)
    while True:
        ids = store.ids(every, start=after, count=batch, descending=False, inclusive=False)
        if not ids:
            break
        _reseal(store, ids, progress)
        after = ids[-1]
        store.save_rekey_cursor(progress.kid, after)
        if on_batch is not None:
            on_batch(progress)
    store.clear_rekey_cursor()
    progress.done = True
    return progress


def _reseal(store, ids, progress):
    """Reseal the records ``ids``: one read and one write round trip per attempt."""
    pending = ids
    progress.scanned += len(ids)
    for _ in range(ATTEMPTS):
        writes = []
        for message_id, (blob, digest, meta) in zip(pending, store.sealed_many(pending)):
            if blob is None or digest is None:
                progress.vanished += 1
            elif store.is_current(blob):
                progress.current += 1
            else:
                resealed = _resealed(store, message_id, blob, digest, meta, progress)
                if resealed is not None:
                    writes.append((message_id, digest, *resealed))
        replies = store.replace_sealed(writes)
        progress.resealed += sum(replies)
        pending = [w[0] for w, ok in zip(writes, replies) if not ok]
        if not pending:
            return
        progress.retried += len(pending)
    progress.busy.extend(pending)


def _resealed(store, message_id, blob, digest, meta, progress):
    """``(blob, digest)`` of a record under the current key, or None (recorded as failed)."""
    try:
        return store.resealed(message_id, blob, digest, meta)
    except DecryptionError as exc:
        progress.failed.append((message_id, exc.code))
    except (ValueError, InvalidMessage):
        progress.failed.append((message_id, "unreadable"))
    return None
