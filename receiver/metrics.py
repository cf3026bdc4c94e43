"""``GET /metrics``: Prometheus text; answers 200 even while Redis is down (``redis_up 0``).

Two kinds of figures:

- per-process ones measured where the request is served: request counts by route, method and
  status, and the webhook latency histogram. Under gunicorn they use prometheus_client's
  multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``receiver/gunicorn.conf.py``), so any
  worker answering the scrape reports the sum over all workers;
- shared ones read from Redis at scrape time (the ``{ns}:stats`` counters every process
  increments, the reconcile runs, the feed, memory, the job queue, the persistence check), the
  same whichever process answers. Redis is pinged first on a short timeout: when it does not
  answer, only ``redis_up 0`` and the Redis-free figures are reported, so alerts can fire on it.

Labels are codes, routes and group names only, never ids or message content. ``process_*``
describes the process that answered.
"""

import os
import time

from flask import Blueprint
from flask import Response
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import ProcessCollector
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily

from inbox import persistence
from inbox.connection import translate_errors
from inbox.errors import StoreUnavailable
from inbox.figures import REJECTED_PREFIX
from inbox.figures import RUNS_PREFIX
from inbox.figures import UNREADABLE_PREFIX
from inbox.figures import Figures
from inbox.figures import safe_code
from inbox.jobs import Jobs
from inbox.store import Outcome
from inbox.store import Store
from inbox.store import Via
from receiver import requestlog
from receiver.resources import resources

PREFIX = "metriport_inbox"

bp = Blueprint("metrics", __name__)

#: not registered globally: each app's scrape registry adds them (or reads the multiprocess files)
REQUESTS = Counter(
    f"{PREFIX}_http_requests", "HTTP requests answered, by route, method and status.",
    ["route", "method", "status"], registry=None,
)
WEBHOOK_SECONDS = Histogram(
    f"{PREFIX}_webhook_duration_seconds", "Time to answer POST /webhook (Metriport waits 4 s).",
    ["status"], registry=None,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
)


class InboxCollector:
    """A ``prometheus_client`` collector over the shared figures of one namespace."""

    def __init__(self, settings, connections, ping_client):
        self.settings = settings
        self.client = connections.store
        self.figures = Figures(settings, client=connections.store)
        self.store = Store(settings, client=connections.store)
        self.jobs = Jobs(settings, connections.queue)
        self.ping_client = ping_client

    def collect(self):
        up = GaugeMetricFamily(f"{PREFIX}_redis_up", "1 when the store's Redis answers a ping.")
        try:
            with translate_errors("ping for metrics"):
                self.ping_client.ping()
            # gathered before the first yield: an outage half-way still gives a whole answer
            families = list(self._from_redis())
        except StoreUnavailable:
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families
        encryption = GaugeMetricFamily(
            f"{PREFIX}_encryption_enabled", "1 when records are encrypted at rest."
        )
        encryption.add_metric([], 1 if self.settings.encryption_on else 0)
        yield encryption

    def _from_redis(self):
        counters = self.figures.counters()
        yield from self._messages(counters)
        yield from self._rejections(counters)
        yield from self._reconcile(counters)
        yield from self._feed()
        yield from self._memory()
        yield from self._jobs()
        yield from self._persistence()
        unreadable = GaugeMetricFamily(
            f"{PREFIX}_unreadable_records",
            "Stored records that failed to open when read and still do (wrong key, tampered).",
        )
        unreadable.add_metric([], len(self.store.unreadable()))
        yield unreadable

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

    def _reconcile(self, counters):
        yield _by_reason(counters, RUNS_PREFIX, CounterMetricFamily(
            f"{PREFIX}_reconcile_runs", "Reconcile runs, by outcome.", labels=["outcome"],
        ))
        runs = self.figures.runs(limit=1)
        last = runs[0] if runs else None
        success = GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_run_success",
            "1 when the last reconcile run succeeded, 0 when it failed (absent before any run).",
        )
        finished = GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_run_timestamp_seconds", "When the last reconcile run ended."
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_reconcile_last_run_age_seconds", "Seconds since the last reconcile run ended."
        )
        if last is not None:
            success.add_metric([], 1 if last.ok else 0)
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

    def _jobs(self):
        depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Jobs waiting in the RQ queue.")
        depth.add_metric([], self.jobs.depth())
        failed = GaugeMetricFamily(f"{PREFIX}_jobs_failed", "Jobs in the RQ failed registry.")
        failed.add_metric([], self.jobs.failed_count())
        yield from (depth, failed)

    def _persistence(self):
        check = persistence.check(self.client, self.settings)
        ok = GaugeMetricFamily(
            f"{PREFIX}_redis_persistence_ok",
            "1 when AOF is on, appendfsync is not no and maxmemory-policy does not evict.",
        )
        ok.add_metric([], 1 if check.ok else 0)
        yield ok


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


#: the labelled children of this process by (route, method, status): ``labels()`` validates and
#: locks on every call, a dictionary lookup does not (each child still writes its own value)
_REQUEST_CHILDREN = {}
_WEBHOOK_CHILDREN = {}


def observe(route, method, status, started):
    """Count one answer and, for the webhook, time it from ``started`` (``perf_counter``).

    Route templates only, never an id from a path. Flask's routes are observed by ``_observe``;
    the webhook, served below Flask, calls this itself (``receiver.webhook``).
    """
    key = (route, method, status)
    child = _REQUEST_CHILDREN.get(key)
    if child is None:
        child = _REQUEST_CHILDREN[key] = REQUESTS.labels(route, method, str(status))
    child.inc()
    if route == "/webhook" and started is not None:
        timer = _WEBHOOK_CHILDREN.get(status)
        if timer is None:
            timer = _WEBHOOK_CHILDREN[status] = WEBHOOK_SECONDS.labels(str(status))
        timer.observe(time.perf_counter() - started)


def _observe(response):
    route = request.url_rule.rule if request.url_rule else "unmatched"
    observe(route, request.method, response.status_code, requestlog.started())
    return response


@bp.get("/metrics")
def metrics():
    """The scrape answer (unauthenticated, like most exporters: it holds no PHI)."""
    registry = resources().metrics_registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def init_app(app):
    shared = resources(app)
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(WEBHOOK_SECONDS)
    ProcessCollector(registry=registry)
    registry.register(InboxCollector(shared.settings, shared.connections, shared.readiness_client))
    shared.metrics_registry = registry
    app.after_request(_observe)
    app.register_blueprint(bp)
