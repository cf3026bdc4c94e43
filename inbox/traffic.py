"""Webhook answers per UTC hour, for the console's 24-hour charts.

The ``{ns}:stats`` counters only ever grow, so they cannot say "how many in the last hour". Each
answer of ``POST /webhook`` also increments one field of ``{ns}:webhooks:hour:<hour>``:
``accepted``, ``rejected:<reason>`` (4xx) or ``failed:<reason>`` (5xx). Each hour's hash expires
a day after the hour ends, so at most 26 of them exist. Fields are codes, never content.
"""

import collections
import threading
import time

from inbox.connection import translate_errors
from inbox.rediskeys import RedisKeys

HOUR = 3600
#: how long an hour's counters are kept after the hour began
KEEP_SECONDS = 26 * HOUR
#: how long counts wait for a queued flush before another is queued
FLUSH_PATIENCE_SECONDS = 1.0


def current_hour(now=None):
    return int((time.time() if now is None else now) // HOUR)


class Traffic:
    """The hourly webhook counters of one namespace."""

    def __init__(self, settings, client, batch=None):
        """``batch``: a ``GroupCommit`` on ``client`` whose round trips the counts may join (the
        receiver's store's), so counting costs a webhook no round trip of its own."""
        self.redis_keys = RedisKeys(settings.namespace)
        self.client = client
        self.batch = batch
        #: counts not yet sent, by (key, field): under load many answers share one HINCRBY
        self._pending = collections.Counter()
        self._lock = threading.Lock()
        #: when a flush of ``_pending`` was queued in the batch (0: none waits): a count that need
        #: not wait joins it; a flush that never ran (its batch failed) is replaced after a second
        self._flush_queued_at = 0.0

    def count(self, field, stats_field=None, wait=True):
        """Add one to ``field`` of this hour (and to ``stats_field`` of the totals).

        The counts of this process are summed until they are sent: one round trip of their own,
        or a place in the next batch of ``batch``. With ``wait=False`` and a batch under way,
        returns at once (a lost count is not reported); with ``wait=True`` the count is in Redis
        when this returns.
        """
        hour_key = self.redis_keys.webhooks_hour(current_hour())
        with self._lock:
            self._pending[hour_key, field] += 1
            if stats_field:
                self._pending[self.redis_keys.stats, stats_field] += 1
            now = time.monotonic()
            if not wait and now - self._flush_queued_at < FLUSH_PATIENCE_SECONDS:
                return
            self._flush_queued_at = now
        with translate_errors("count a webhook"):
            if self.batch is not None:
                self.batch.commands(self._flush, wait=wait)
                return
            pipe = self.client.pipeline(transaction=False)
            self._flush(pipe)
            pipe.execute()

    def _flush(self, pipe):
        """Queue every pending count on ``pipe``: one HINCRBY per field, one EXPIRE per hour."""
        with self._lock:
            pending, self._pending = self._pending, collections.Counter()
            self._flush_queued_at = 0.0
        hours = set()
        for (key, field), n in pending.items():
            pipe.hincrby(key, field, n)
            if key != self.redis_keys.stats:
                hours.add(key)
        for key in hours:
            pipe.expire(key, KEEP_SECONDS)

    def hours(self, count=24, now=None):
        """``[(hour start in epoch seconds, {field: n}), ...]`` for the last ``count`` hours, oldest first."""
        last = current_hour(now)
        hours = list(range(last - count + 1, last + 1))
        with translate_errors("read webhook counters"):
            pipe = self.client.pipeline(transaction=False)
            for hour in hours:
                pipe.hgetall(self.redis_keys.webhooks_hour(hour))
            rows = pipe.execute()
        return [
            (hour * HOUR, {name.decode(): int(value) for name, value in row.items()})
            for hour, row in zip(hours, rows)
        ]
