"""``GET /metrics``: Prometheus text, computed from Redis at scrape time.

Each gunicorn worker and the RQ worker increment the shared ``{ns}:stats`` hash, so a custom
collector that reads it (instead of per-process ``prometheus_client`` counters) reports the same
totals whichever worker answers the scrape. Labels are codes and group names only, never ids or
message content.
"""

import time

from flask import Blueprint
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily

from inbox.figures import REJECTED_PREFIX
from inbox.figures import UNREADABLE_PREFIX
from inbox.figures import Figures
from inbox.figures import safe_code
from inbox.store import Outcome
from inbox.store import Via
from receiver.resources import resources

PREFIX = "metriport_inbox"

bp = Blueprint("metrics", __name__)


class InboxCollector:
    """A ``prometheus_client`` collector over the shared figures of one namespace."""

    def __init__(self, figures):
        self.figures = figures

    def collect(self):
        counters = self.figures.counters()
        yield from self._messages(counters)
        yield from self._rejections(counters)
        yield from self._reconcile()
        yield from self._feed()
        yield from self._memory()
        encryption = GaugeMetricFamily(
            f"{PREFIX}_encryption_enabled", "1 when records are encrypted at rest."
        )
        encryption.add_metric([], 1 if self.figures.settings.encryption_on else 0)
        yield encryption

    def _messages(self, counters):
        messages = CounterMetricFamily(
            f"{PREFIX}_messages", "Messages stored, by outcome and channel.",
            labels=["outcome", "channel"],
        )
        for outcome in Outcome:
            for channel in Via:
                name = f"{outcome.value}:{channel.value}"
                messages.add_metric([outcome.value, channel.value], counters.get(name, 0))
        yield messages
        repaired = CounterMetricFamily(
            f"{PREFIX}_repaired", "Messages the webhooks missed that reconciliation created."
        )
        repaired.add_metric([], counters.get("created:reconcile", 0))
        yield repaired
        replays = CounterMetricFamily(
            f"{PREFIX}_webhook_replays", "Webhook deliveries answered from the delivery ledger."
        )
        replays.add_metric([], counters.get("replay", 0))
        yield replays

    def _rejections(self, counters):
        yield _by_reason(counters, REJECTED_PREFIX, CounterMetricFamily(
            f"{PREFIX}_webhooks_rejected", "Webhook requests refused, by reason code.",
            labels=["reason"],
        ))
        yield _by_reason(counters, UNREADABLE_PREFIX, CounterMetricFamily(
            f"{PREFIX}_records_unreadable",
            "Stored records a mirror read could not open (key not in the ring, tampered, unsealed), "
            "by reason code.",
            labels=["reason"],
        ))

    def _reconcile(self):
        runs = self.figures.runs(limit=1)
        last = runs[0] if runs else None
        success = GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_run_success",
            "1 when the last reconcile run succeeded, 0 when it failed (absent before any run).",
            labels=["outcome"],
        )
        finished = GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_run_timestamp_seconds", "When the last reconcile run ended."
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_run_age_seconds", "Seconds since the last reconcile run ended."
        )
        if last is not None:
            success.add_metric([last.outcome.value], 1 if last.ok else 0)
            finished.add_metric([], last.ended_at)
            age.add_metric([], max(0.0, time.time() - last.ended_at))
        yield from (success, finished, age)

    def _feed(self):
        length = GaugeMetricFamily(f"{PREFIX}_feed_length", "Entries in the feed stream.")
        length.add_metric([], self.figures.feed_length())
        dead = GaugeMetricFamily(f"{PREFIX}_feed_deadletter_length", "Entries in the dead-letter stream.")
        dead.add_metric([], self.figures.deadletter_length())
        lag = GaugeMetricFamily(
            f"{PREFIX}_feed_consumer_lag", "Feed entries not yet handed to a consumer group.",
            labels=["group"],
        )
        pending = GaugeMetricFamily(
            f"{PREFIX}_feed_consumer_pending", "Entries handed out to a group but not acked.",
            labels=["group"],
        )
        for group in self.figures.groups():
            lag.add_metric([safe_code(group.name)], group.lag)
            pending.add_metric([safe_code(group.name)], group.pending)
        yield from (length, dead, lag, pending)

    def _memory(self):
        memory = self.figures.memory()
        used = GaugeMetricFamily(f"{PREFIX}_redis_memory_used_bytes",
                                 "Memory Redis uses (used_memory) on the namespace's server.")
        used.add_metric([], memory.used)
        limit = GaugeMetricFamily(f"{PREFIX}_redis_memory_max_bytes",
                                  "Redis maxmemory (0: no limit set).")
        limit.add_metric([], memory.maximum)
        threshold = GaugeMetricFamily(
            f"{PREFIX}_redis_memory_warn_ratio", "INBOX_MEMORY_WARN_PERCENT as a ratio.")
        threshold.add_metric([], memory.warn_percent / 100)
        warning = GaugeMetricFamily(
            f"{PREFIX}_redis_memory_warning",
            "1 when used memory is at or above the warning share of maxmemory.")
        warning.add_metric([], 1 if memory.warning else 0)
        yield from (used, limit, threshold, warning)


def _by_reason(counters, prefix, family):
    """``family`` filled from the counters named ``<prefix><reason>``."""
    totals = {}
    for name, value in counters.items():
        if name.startswith(prefix):
            reason = safe_code(name[len(prefix):])
            totals[reason] = totals.get(reason, 0) + value
    for reason, value in sorted(totals.items()):
        family.add_metric([reason], value)
    return family


@bp.get("/metrics")
def metrics():
    """The scrape answer (unauthenticated, like most exporters: it holds no PHI)."""
    registry = resources().metrics_registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app):
    shared = resources(app)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InboxCollector(Figures(shared.settings, client=shared.connections.store)))
    shared.metrics_registry = registry
    app.register_blueprint(bp)
