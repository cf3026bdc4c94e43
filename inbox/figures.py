"""Operating figures shared by ``GET /metrics`` and ``metriport-inbox stats``.

Everything is read from Redis (the ``{ns}:stats`` counters every process increments, the
reconcile runs list, the feed and its groups), so any process reports the same numbers. Figures
hold counts, codes and ids of groups only, never message content.
"""

from inbox.connection import Connections
from inbox.feed import Feed
from inbox.normalize import valid_code
from inbox.runs import RunLog
from inbox.store import Store

#: counters named ``rejected:<reason>`` count refused webhooks by reason code
REJECTED_PREFIX = "rejected:"
#: counters named ``runs:<outcome>`` count reconcile runs by outcome
RUNS_PREFIX = "runs:"


def safe_code(value):
    """``value`` when it looks like a machine code, else ``"other"`` (keeps labels PHI-free)."""
    return value if valid_code(value) else "other"


class Figures:
    """Reads the figures of one namespace."""

    def __init__(self, settings, client=None):
        self.settings = settings
        client = client if client is not None else Connections(settings).store
        self.store = Store(settings, client=client)
        self.feed = Feed(settings, client=client)

    def counters(self):
        """The shared counters as ``{name: int}`` (``Store.stats``)."""
        return self.store.stats()

    def runs(self, limit=5):
        """The last ``limit`` reconcile runs (``inbox.runs.Run``), newest first."""
        return RunLog(self.store).recent(limit)

    def groups(self):
        return self.feed.groups()

    def feed_length(self):
        return self.feed.length()

    def deadletter_length(self):
        return self.feed.deadletter_length()

    @property
    def encryption(self):
        return "on" if self.settings.encryption_on else "off"
