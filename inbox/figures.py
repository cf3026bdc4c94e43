"""Operating figures shared by ``GET /metrics`` and ``metriport-inbox stats``.

Everything is read from Redis (the ``{ns}:stats`` counters every process increments, the
reconcile runs list, the feed and its groups), so any process reports the same numbers. Figures
hold counts, codes and ids of groups only, never message content.
"""

import dataclasses
import datetime
import json
import re

from inbox.connection import Connections
from inbox.feed import Feed
from inbox.store import Store

OUTCOMES = ("created", "updated", "duplicate", "stale")
CHANNELS = ("webhook", "reconcile", "fetch")
#: counters named ``rejected:<reason>`` count refused webhooks by reason code
REJECTED_PREFIX = "rejected:"
#: counters named ``runs:<outcome>`` count reconcile runs by outcome
RUNS_PREFIX = "runs:"
#: a run record counts as a success when its outcome is one of these
SUCCESS_OUTCOMES = frozenset({"ok", "success", "succeeded", "completed", "complete", "done"})

_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def safe_code(value):
    """``value`` when it looks like a machine code, else ``"other"`` (keeps labels PHI-free)."""
    return value if isinstance(value, str) and _CODE.match(value) else "other"


@dataclasses.dataclass(frozen=True)
class Run:
    """One reconcile run as the worker recorded it: its outcome code and when it ended."""

    outcome: str
    ok: bool
    finished: float | None
    record: dict

    @classmethod
    def from_record(cls, record):
        outcome = record.get("outcome") or record.get("status")
        if outcome is None and "ok" in record:
            outcome = "ok" if record["ok"] else "failed"
        outcome = safe_code(outcome) if outcome is not None else "unknown"
        finished = None
        for field in ("finished_at", "finishedAt", "ended_at", "ended", "finished", "at",
                      "started_at", "startedAt", "started"):
            finished = _epoch_seconds(record.get(field))
            if finished is not None:
                break
        return cls(outcome=outcome, ok=outcome in SUCCESS_OUTCOMES, finished=finished, record=record)


def _epoch_seconds(value):
    """Seconds since the epoch from seconds, milliseconds or an ISO 8601 text; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    return None


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
        """The last ``limit`` reconcile runs, newest first (records that are not JSON skipped)."""
        runs = []
        for item in self.store.runs(limit):
            try:
                record = json.loads(item)
            except ValueError:
                continue
            if isinstance(record, dict):
                runs.append(Run.from_record(record))
        return runs

    def groups(self):
        return self.feed.groups()

    def feed_length(self):
        return self.feed.length()

    def deadletter_length(self):
        return self.feed.deadletter_length()

    @property
    def encryption(self):
        return "on" if self.settings.encryption_on else "off"
