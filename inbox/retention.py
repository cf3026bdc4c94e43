"""Retention: messages older than ``INBOX_RETENTION_DAYS`` lose their content, keep a tombstone.

A run walks ``{ns}:idx:all`` (live records only: tombstones have left it) by id in bounded
batches; each batch is read and expired in two round trips holding at most ``batch`` records
(``Store.expire``, ``messages_expire.lua``). After each batch the last id done is saved in
``{ns}:expire:cursor``, so a run that dies is resumed by the next one from there. The walk's cost
grows with the messages inside the window, not with everything ever stored.

A run reports what it removed (counts and content bytes, never content) as a JSON-ready dict;
the clock runs one every ``EXPIRE_INTERVAL`` seconds (``worker/schedule.py``).
"""

import dataclasses
import datetime
import time

from inbox.errors import ConfigError

#: records read and expired per round trip
DEFAULT_BATCH = 200
#: seconds between scheduled expiry runs (the window is days: an hour late costs nothing)
EXPIRE_INTERVAL = 3600
DAY_MS = 86_400_000


@dataclasses.dataclass
class Report:
    """Where an expiry run stands; the last one is its result."""

    retention_days: int
    cutoff_ms: int
    resumed_after: str | None = None
    batches: int = 0
    scanned: int = 0
    expired: int = 0
    kept: int = 0
    changed: int = 0
    gone: int = 0
    bytes_freed: int = 0
    seconds: float = 0.0
    done: bool = False

    def summary(self):
        """The report as a JSON-ready dict (counts and times only)."""
        return {**dataclasses.asdict(self), "cutoff": _iso(self.cutoff_ms)}

    def line(self):
        """One human line, as ``metriport-inbox expire --once`` prints it."""
        return (
            f"expired {self.expired} messages older than {_iso(self.cutoff_ms)} "
            f"(retention {self.retention_days} days), {self.bytes_freed} bytes of content freed; "
            f"scanned {self.scanned} in {self.batches} batches: {self.kept} inside the window, "
            f"{self.changed} changed meanwhile (next run), {self.gone} already gone"
        )


def expire(store, retention_days=None, batch=DEFAULT_BATCH, now_ms=None, on_batch=None):
    """Expire every record of ``store`` older than the retention window; the final ``Report``.

    ``retention_days`` defaults to the store's ``INBOX_RETENTION_DAYS`` (``ConfigError`` when
    neither is set). ``on_batch(report)`` is called after each batch. Safe while the service runs
    and safe to interrupt: the next run resumes after the last finished batch.
    """
    days = retention_days or store.settings.retention_days
    if not days:
        raise ConfigError("INBOX_RETENTION_DAYS is not set: retention is off, nothing expires.")
    if batch <= 0:
        raise ValueError("batch must be positive")
    started = time.monotonic()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    after = store.expiry_cursor()
    report = Report(retention_days=days, cutoff_ms=now_ms - days * DAY_MS, resumed_after=after)
    while True:
        ids = store.ids(store.index_key(), start=after, count=batch, descending=False,
                        inclusive=False)
        if not ids:
            break
        result = store.expire(ids, report.cutoff_ms)
        report.batches += 1
        report.scanned += len(ids)
        report.expired += len(result.expired)
        report.kept += result.kept
        report.changed += result.changed
        report.gone += result.gone
        report.bytes_freed += result.bytes
        after = ids[-1]
        store.save_expiry_cursor(after)
        if on_batch is not None:
            on_batch(report)
    store.save_expiry_cursor(None)
    report.done = True
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _iso(ms):
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
