"""Webhook answers per UTC hour, for the console's 24-hour charts.

The ``{ns}:stats`` counters only ever grow, so they cannot say "how many in the last hour". Each
answer of ``POST /webhook`` also increments one field of ``{ns}:webhooks:hour:<hour>``:
``accepted``, ``rejected:<reason>`` (4xx) or ``failed:<reason>`` (5xx). Each hour's hash expires
a day after the hour ends, so at most 26 of them exist. Fields are codes, never content.
"""

import time

from inbox.connection import translate_errors
from inbox.rediskeys import RedisKeys

HOUR = 3600
#: how long an hour's counters are kept after the hour began
KEEP_SECONDS = 26 * HOUR


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

    def count(self, field, stats_field=None, wait=True):
        """Add one to ``field`` of this hour (and to ``stats_field`` of the totals).

        One round trip of its own, or a place in the next batch of ``batch``; with
        ``wait=False`` and a batch under way, returns at once (a lost count is not reported).
        """
        key = self.redis_keys.webhooks_hour(current_hour())

        def queue(pipe):
            pipe.hincrby(key, field, 1)
            pipe.expire(key, KEEP_SECONDS)
            if stats_field:
                pipe.hincrby(self.redis_keys.stats, stats_field, 1)

        with translate_errors("count a webhook"):
            if self.batch is not None:
                self.batch.commands(queue, wait=wait)
                return
            pipe = self.client.pipeline(transaction=False)
            queue(pipe)
            pipe.execute()

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
