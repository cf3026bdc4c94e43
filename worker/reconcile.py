"""One reconciliation run: walk List Messages per direction and upsert every page into the store.

Metriport never retries a failed webhook, so this walk is what makes the store complete. A run

- takes the single-flight lock (another run in progress -> outcome ``skipped``);
- optionally asks Metriport to re-send failed webhooks (``METRIPORT_WEBHOOK_AUTO_RETRY``);
- walks each direction separately (the direction of every item is known from the query), one
  batch upsert per page, fetching the next page while the current one is stored;
- in ``incremental`` mode stops after ``RECONCILE_STOP_AFTER`` consecutive pages that created or
  updated nothing; a direction is walked ``full`` when asked, when it never had a complete full
  walk, or when its last one is older than ``RECONCILE_FULL_INTERVAL`` (plus one interval of
  grace, so the scheduled full run normally gets there first);
- checkpoints the next page's URL per direction after every page, so a run that dies is resumed
  by the next one from there (the checkpoint expires after ``RECONCILE_FULL_INTERVAL``);
- stops at the request budget (outcome ``budget_exhausted``: resumable, not an error);
- records itself in a capped list and counts messages it created as ``repaired``.

Logs and the summary hold counts, ids of nothing, and reason codes: never message content.
"""

import concurrent.futures
import dataclasses
import datetime
import json
import logging
import time

from inbox.connection import connect
from inbox.connection import translate_errors
from inbox.errors import InboxError
from inbox.errors import MetriportError
from inbox.errors import StoreUnavailable
from inbox.store import Store
from inbox.store import Via
from worker.client import MAX_RETRY_SECONDS
from worker.client import MetriportClient
from worker.lock import Lock

log = logging.getLogger("worker.reconcile")

#: runs kept in the run list
RUNS_KEPT = 100
#: the lock outlives the longest wait between two renewals (one page's retries) with margin
LOCK_TTL_MS = int((2 * MAX_RETRY_SECONDS + 30) * 1000)
MODES = ("incremental", "full")
#: read timeout for Redis replies: a 500-message upsert on a busy server can take longer than the
#: store's default 0.5 s, and a timed-out script would be sent again (counted as duplicates)
STORE_TIMEOUT = 5.0


@dataclasses.dataclass
class Tally:
    """Counts of one walk or of a whole run."""

    pages: int = 0
    seen: int = 0
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    stale: int = 0
    invalid: int = 0

    def add(self, other):
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class Reconciliation:
    """One run over ``directions``; ``run()`` returns its summary (a JSON-ready dict)."""

    def __init__(self, settings, mode="incremental", directions=None, client_options=None):
        if mode not in MODES:
            raise InboxError(f"The reconcile mode must be one of {', '.join(MODES)}.", "invalid_mode")
        self.settings = settings
        self.mode = mode
        self.directions = tuple(directions or settings.reconcile_directions)
        self.client = MetriportClient(
            settings, budget=settings.reconcile_request_budget, **(client_options or {})
        )
        self.store = None
        self.lock = None
        self.walks = {}
        self.round_trips = 0
        self.webhook = None

    def run(self):
        """Do the run; Metriport or Redis trouble ends it with an outcome, never an exception.

        Anything else (RQ's job timeout, Ctrl-C) still releases the lock, is recorded as
        ``interrupted`` and propagates.
        """
        started = time.time()
        outcome, error = "completed", None
        try:
            self.store = Store(self.settings, client=connect(self.settings.redis_url, STORE_TIMEOUT))
            self.lock = Lock(self.store, LOCK_TTL_MS)
            if not self.lock.acquire():
                outcome = "skipped"
                log.info("reconcile: skipped, another run holds the lock")
            else:
                with translate_errors("reconcile"):
                    self._walk_all()
        except InboxError as exc:
            outcome = "budget_exhausted" if exc.code == "budget_exhausted" else "failed"
            error = {"code": exc.code, "detail": exc.detail}
            log.warning("reconcile: %s: %s: %s", outcome, exc.code, exc.detail)
        except BaseException as exc:
            error = {"code": "interrupted", "detail": f"The run was interrupted ({type(exc).__name__})."}
            self._finish(started, "failed", error)
            raise
        return self._finish(started, outcome, error)

    def _finish(self, started, outcome, error):
        self.client.close()
        if self.lock is not None:
            try:
                self.lock.release()
            except StoreUnavailable:
                log.warning("reconcile: could not release the lock; it expires by itself")
        summary = self._summary(started, time.time(), outcome, error)
        self._record(summary)
        return summary

    def _walk_all(self):
        self._retry_webhooks()
        with concurrent.futures.ThreadPoolExecutor(1, "metriport-read-ahead") as reader:
            for direction in self.directions:
                self._walk(direction, reader)

    # -- one direction ----------------------------------------------------------------------

    def _walk(self, direction, reader):
        mode = self._mode_for(self._last_full(direction))
        url, resumed = self._checkpoint(direction), True
        if url is None:
            url, resumed = self.client.list_url(direction, self.settings.reconcile_page_size), False
        tally = Tally()
        self.walks[direction] = {"mode": mode, "resumed": resumed, "complete": False, "tally": tally}
        log.info("reconcile %s: %s walk%s", direction, mode, " resumed from checkpoint" if resumed else "")
        stop_after = self.settings.reconcile_stop_after
        streak = 0
        pending = reader.submit(self.client.list_page, url)
        while pending is not None:
            page = pending.result()
            # Read ahead while this page is normalized and stored (the reader thread mostly waits
            # on the network, this one on the CPU and Redis), unless this page may be the last one
            # an incremental walk needs: then the extra request would be wasted quota.
            may_stop = mode == "incremental" and streak + 1 >= stop_after
            pending = None
            if page.next_url and not may_stop:
                pending = reader.submit(self.client.list_page, page.next_url)
            counts, invalid = self._take(direction, page, tally)
            streak = 0 if counts["created"] or counts["updated"] else streak + 1
            end = page.next_url is None
            stop = end or (mode == "incremental" and streak >= stop_after)
            self._persist(direction, None if stop else page.next_url, counts["created"], invalid)
            if page.refused is not None:
                raise page.refused
            if stop:
                break
            if pending is None:
                pending = reader.submit(self.client.list_page, page.next_url)
        self.walks[direction]["complete"] = True
        if mode == "full" and end:
            self.store.save_full_walk(direction, int(time.time() * 1000))
            self.round_trips += 1

    def _take(self, direction, page, tally):
        """Normalize and store one page, count it, log one line; ``(counts, invalid)``."""
        records, invalid = page.normalized(direction)
        counts = self._store(records)
        skipped = sum(invalid.values())
        tally.add(Tally(1, len(page.items), counts["created"], counts["updated"],
                        counts["duplicates"], counts["stale"], skipped))
        if page.items_in_total is not None:
            log.info("reconcile %s: Metriport lists %d messages", direction, page.items_in_total)
        log.info(
            "reconcile %s: page %d: %d seen, %d created, %d updated, %d invalid (requests %d)",
            direction, tally.pages, len(page.items), counts["created"], counts["updated"],
            skipped, self.client.requests,
        )
        return counts, invalid

    def _last_full(self, direction):
        """When the last complete full walk of ``direction`` ended (ms), or None."""
        self.round_trips += 1
        return self.store.last_full_walk(direction)

    def _mode_for(self, last_full):
        if self.mode == "full" or last_full is None:
            return "full"
        grace = self.settings.reconcile_full_interval + self.settings.reconcile_interval
        return "full" if time.time() * 1000 - int(last_full) >= grace * 1000 else "incremental"

    def _checkpoint(self, direction):
        """The saved next-page URL of an interrupted walk, if fresh and on the API's origin."""
        raw = self.store.checkpoint(direction)
        self.round_trips += 1
        if raw is None:
            return None
        try:
            return self.client.check_origin(json.loads(raw)["url"])
        except (ValueError, KeyError, TypeError, MetriportError):
            log.warning("reconcile %s: ignored an unusable checkpoint or one outside METRIPORT_API_URL", direction)
            return None

    def _store(self, records):
        if not records:
            return {"created": 0, "updated": 0, "duplicates": 0, "stale": 0}
        self.round_trips += 1
        return self.store.upsert(records, via=Via.RECONCILE).counts()

    def _persist(self, direction, next_url, created, invalid):
        """Checkpoint, counters and lock renewal in one transaction (one round trip)."""
        pipe = self.store.pipeline(transaction=True)
        checkpoint = None
        if next_url:
            checkpoint = json.dumps({"url": next_url, "saved": int(time.time() * 1000)})
        self.store.save_checkpoint(direction, checkpoint, self.settings.reconcile_full_interval * 1000,
                                   pipeline=pipe)
        if created:
            self.store.count_event("repaired", created, pipeline=pipe)
        for reason, count in invalid.items():
            self.store.count_event(f"invalid:reconcile:{reason}", count, pipeline=pipe)
        self.lock.renew(pipeline=pipe)
        with translate_errors("checkpoint the walk"):
            still_ours = pipe.execute()[-1]
        self.round_trips += 1
        if not still_ours:
            raise InboxError(
                "The reconciliation lock expired or was taken over; stopped to avoid two runs at once.",
                "lock_lost",
            )

    # -- around the walks -------------------------------------------------------------------

    def _retry_webhooks(self):
        if not self.settings.webhook_auto_retry:
            return
        try:
            status = self.client.webhook_status()
            failed = status.get("webhookRequestsFailed")
            failed = failed if isinstance(failed, int) else 0
            retried = failed > 0
            if retried:
                self.client.retry_webhooks()
            self.webhook = {"failed": failed, "retried": retried}
            log.info("reconcile: webhook requests failed at Metriport: %d, retry asked: %s", failed, retried)
        except MetriportError as exc:
            if exc.code == "budget_exhausted":
                raise
            self.webhook = {"error": exc.code}
            log.warning("reconcile: webhook status check failed: %s", exc.code)

    def _summary(self, started, ended, outcome, error):
        walked = {w["mode"] for w in self.walks.values()}
        summary = {
            "outcome": outcome,
            # the requested mode, or "full" when any direction was walked in full
            "mode": "full" if "full" in walked else self.mode,
            "started": _iso(started),
            "ended": _iso(ended),
            "seconds": round(ended - started, 3),
            "directions": {
                d: {"mode": w["mode"], "resumed": w["resumed"], "complete": w["complete"],
                    **dataclasses.asdict(w["tally"])}
                for d, w in self.walks.items()
            },
            "requests": self.client.requests,
            "retries": self.client.retries,
            "round_trips": self.round_trips,
        }
        partial = Tally()
        for walk in self.walks.values():
            partial.add(walk["tally"])
        summary.update(dataclasses.asdict(partial))
        summary["repaired"] = partial.created
        if self.webhook is not None:
            summary["webhook"] = self.webhook
        if error is not None:
            summary["error"] = error
        return summary

    def _record(self, summary):
        """Push the summary on the capped run list; a Redis outage only costs the record."""
        if self.store is None:
            return
        try:
            with translate_errors("record the run"):
                pipe = self.store.pipeline()
                self.store.append_run(json.dumps(summary), RUNS_KEPT, {
                    "last_outcome": summary["outcome"], "last_ended": summary["ended"]},
                    pipeline=pipe)
                self.store.count_event(f"runs:{summary['outcome']}", pipeline=pipe)
                pipe.execute()
        except StoreUnavailable as exc:
            log.warning("reconcile: could not record the run (%s)", exc.code)


def run(settings, mode="incremental", directions=None, client_options=None):
    """One reconciliation run with ``settings``; returns the summary dict."""
    return Reconciliation(settings, mode, directions, client_options).run()


def recent_runs(store, count=10):
    """The last ``count`` run summaries, newest first."""
    return [json.loads(row) for row in store.runs(count)]


def _iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="milliseconds")
