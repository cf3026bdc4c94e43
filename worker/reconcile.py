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
- defends itself against a list endpoint that misbehaves: a ``nextPage`` (or a page) that repeats
  within the run fails it (``cursor_loop``) and deletes the direction's checkpoint, so the next run
  starts that direction afresh instead of resuming the loop; a page with more items than the
  ``count`` asked fails it (``page_too_large``) before anything of it is stored, so no Redis call
  holds more than ``RECONCILE_PAGE_SIZE`` messages; the whole run has a deadline
  (``RECONCILE_DEADLINE``, and never past the RQ job's own timeout) and each request one of its
  own (``worker.client``), after which the run fails and releases the lock at once;
- records itself in a capped list and counts messages it created as ``repaired``.

Logs and the summary hold counts, ids of nothing, and reason codes: never message content.
"""

import concurrent.futures
import contextlib
import gc
import json
import logging
import time
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from inbox.connection import connect
from inbox.connection import translate_errors
from inbox.errors import BudgetExhausted
from inbox.errors import InboxError
from inbox.errors import InvalidMode
from inbox.errors import LockLost
from inbox.errors import MetriportError
from inbox.errors import StoreUnavailable
from inbox.runs import Mode
from inbox.runs import Run
from inbox.runs import RunLog
from inbox.runs import RunOutcome
from inbox.runs import Tally
from inbox.runs import Walk
from inbox.runs import iso
from inbox.store import Page
from inbox.store import Store
from inbox.store import Via
from worker.client import MAX_RETRY_SECONDS
from worker.client import MetriportClient
from worker.lock import Lock

log = logging.getLogger("worker.reconcile")

#: the lock outlives the longest wait between two renewals (one page's retries) with margin
LOCK_TTL_MS = int((2 * MAX_RETRY_SECONDS + 30) * 1000)
#: waits between two attempts to free the lock after Redis went away mid-run (seconds)
RELEASE_RETRY_FIRST = 0.5
RELEASE_RETRY_MAX = 5.0
#: read timeout for Redis replies: a 500-message upsert on a busy server can take longer than the
#: store's default 0.5 s, and a timed-out script would be sent again (counted as duplicates)
STORE_TIMEOUT = 5.0
#: most extra walks one run does for immediate runs that found it holding the lock
RERUNS_MAX = 3
#: allocations between two young-generation collections while walking (Python's default: 700)
WALK_GC_THRESHOLD = 10_000


class Reconciliation:
    """One run over ``directions``; ``run()`` returns its ``Run`` (and records it)."""

    def __init__(self, settings, mode=Mode.INCREMENTAL, directions=None, client_options=None,
                 deadline=None, handoff=False):
        try:
            mode = Mode(mode)
        except ValueError:
            raise InvalidMode(
                f"The reconcile mode must be one of {', '.join(m.value for m in Mode)}."
            ) from None
        self.settings = settings
        self.mode = mode
        self.directions = tuple(directions or settings.reconcile_directions)
        seconds = min(settings.reconcile_deadline, deadline or settings.reconcile_deadline)
        self.client = MetriportClient(
            settings, budget=settings.reconcile_request_budget,
            run_deadline=time.monotonic() + seconds, **(client_options or {})
        )
        self.handoff = handoff
        self.store = None
        self.lock = None
        self.walks = {}
        self.round_trips = 0
        self.webhook = None
        # an RQ job (it has a deadline) may wait for Redis to free its lock; the command may not
        self.release_until = time.monotonic() + seconds if deadline else None

    def run(self):
        """Do the run; Metriport or Redis trouble ends it with an outcome, never an exception.

        Anything else (RQ's job timeout, Ctrl-C) still releases the lock, is recorded as
        ``interrupted`` and propagates.
        """
        started = time.time()
        outcome, error = RunOutcome.COMPLETED, None
        try:
            self.store = Store(self.settings, client=connect(self.settings.redis_url, STORE_TIMEOUT))
            self.lock = Lock(self.store, LOCK_TTL_MS)
            if self.handoff:
                # requests made before this point are covered by this run (or the one it hands to)
                self.store.clear_soon_run()
            if not self._take_lock():
                outcome = RunOutcome.SKIPPED
            else:
                self.store.clear_rerun()
                with translate_errors("reconcile"), _collect_less_often():
                    self._walk_all()
                    self._walk_again_while_asked()
        except InboxError as exc:
            outcome = (RunOutcome.BUDGET_EXHAUSTED if isinstance(exc, BudgetExhausted)
                       else RunOutcome.FAILED)
            error = {"code": exc.code, "detail": exc.detail}
            log.warning("reconcile: %s: %s: %s", outcome.value, exc.code, exc.detail)
        except BaseException as exc:
            error = {"code": "interrupted", "detail": f"The run was interrupted ({type(exc).__name__})."}
            self._finish(started, RunOutcome.FAILED, error)
            raise
        return self._finish(started, outcome, error)

    def _take_lock(self):
        """Take the lock; with ``handoff``, a run that finds it held asks the holder to walk
        again before it releases (the holder's walk may have passed the newest page already)."""
        if self.lock.acquire():
            return True
        if self.handoff:
            self.store.request_rerun(LOCK_TTL_MS)
            if self.lock.acquire():  # the holder released in between
                return True
            log.info("reconcile: another run holds the lock; it walks again before releasing")
            return False
        log.info("reconcile: skipped, another run holds the lock")
        return False

    def _walk_again_while_asked(self):
        """Incremental walks, as long as immediate runs asked for one while this run held the
        lock (bounded: a steady stream of requests is served by the runs that follow)."""
        for _ in range(RERUNS_MAX):
            if not self.lock.release_unless_asked_again():
                return
            log.info("reconcile: asked to walk again while running; incremental walk")
            with concurrent.futures.ThreadPoolExecutor(1, "metriport-read-ahead") as reader:
                for direction in self.directions:
                    self._walk(direction, reader, again=True)

    def _finish(self, started, outcome, error):
        self.client.close()
        if self.lock is not None:
            try:
                self.lock.release()
            except StoreUnavailable:
                self._release_when_back()
        run = self._run(started, time.time(), outcome, error)
        self._record(run)
        return run

    def _release_when_back(self):
        """Redis went away during the run. As an RQ job, retry freeing the lock until Redis is
        back (up to the run's deadline), so the next scheduled run resumes the walk at once
        instead of returning ``skipped`` until the lock expires; a foreground run fails fast."""
        wait = RELEASE_RETRY_FIRST
        while self.release_until is not None and time.monotonic() + wait < self.release_until:
            time.sleep(wait)
            wait = min(wait * 2, RELEASE_RETRY_MAX)
            try:
                self.store.lock_release(self.lock.token)
            except StoreUnavailable:
                continue
            log.info("reconcile: Redis is back; the lock is released")
            return
        log.warning("reconcile: could not release the lock; it expires by itself")

    def _walk_all(self):
        self._retry_webhooks()
        with concurrent.futures.ThreadPoolExecutor(1, "metriport-read-ahead") as reader:
            try:
                for direction in self.directions:
                    self._walk(direction, reader)
            except BaseException:
                # a read-ahead still in flight would hold the run (and its lock) until its own
                # deadline: cut it, so the run ends and the lock is released at once
                self.client.abort()
                raise

    # -- one direction ----------------------------------------------------------------------

    def _walk(self, direction, reader, again=False):
        if again:
            # one more incremental walk from the first page, counted with the run's walk
            mode, url, resumed = Mode.INCREMENTAL, None, False
        else:
            mode = self._mode_for(self._last_full(direction))
            url, resumed = self._checkpoint(direction), True
        if url is None:
            url, resumed = self.client.list_url(direction, self.settings.reconcile_page_size), False
        walk = self.walks.get(direction) if again else None
        if walk is None:
            walk = self.walks[direction] = Walk(mode, resumed)
        tally = walk.tally
        log.info("reconcile %s: %s walk%s", direction, mode.value,
                 " resumed from checkpoint" if resumed else "")
        stop_after = self.settings.reconcile_stop_after
        streak = 0
        seen_urls, seen_pages = {_canonical(url)}, set()
        pending = reader.submit(self._read, url, direction)
        while pending is not None:
            page, prepared = pending.result()
            looped = self._check_page(direction, page, tally.pages + 1, seen_urls, seen_pages)
            # Read ahead while this page is normalized and stored (the reader thread mostly waits
            # on the network, this one on the CPU and Redis), unless this page may be the last one
            # an incremental walk needs: then the extra request would be wasted quota.
            may_stop = mode is Mode.INCREMENTAL and streak + 1 >= stop_after
            pending = None
            if page.next_url and not may_stop and not looped:
                pending = reader.submit(self._read, page.next_url, direction)
            # a looping cursor is never checkpointed: the checkpoint is deleted instead
            next_url = None if looped else page.next_url
            counts = self._take(direction, page, prepared, tally, next_url, may_stop)
            streak = 0 if counts["created"] or counts["updated"] else streak + 1
            end = page.next_url is None
            stop = end or (mode is Mode.INCREMENTAL and streak >= stop_after)
            if looped:
                raise MetriportError(
                    f"Metriport's nextPage for {direction} went back to a page already read in this "
                    f"run (after page {tally.pages}); stopped, and the next run starts {direction} "
                    "afresh.",
                    "cursor_loop",
                )
            if page.refused is not None:
                raise page.refused
            if stop:
                break
            if pending is None:
                pending = reader.submit(self._read, page.next_url, direction)
        walk.complete = True
        if mode is Mode.FULL and end:
            self.store.save_full_walk(direction, int(time.time() * 1000))
            self.round_trips += 1

    def _read(self, url, direction):
        """Fetch a page, normalize it and make its records ready for the store (digests, sealed
        resources, the script's arguments), in the reader thread: ``(page, prepared)``.

        While the reader does this for the next page, the walk's thread waits on Redis storing
        the current one: the Python work overlaps the script's run, and the walk's thread only
        sends the next call once the reply is in.
        """
        page = self.client.list_page(url)
        records, _ = page.normalized(direction)
        return page, self.store.prepare(records)

    def _check_page(self, direction, page, number, seen_urls, seen_pages):
        """True when the page's cursor goes round in circles; fail the run on a page too large.

        Checked before the page is stored or the next one asked for. A page seen before (same
        ids) counts as a loop too, whatever its URL says.
        """
        asked = self.settings.reconcile_page_size
        if len(page.items) > asked:
            raise MetriportError(
                f"Metriport answered page {number} of {direction} with {len(page.items)} items when "
                f"{asked} were asked; refused before storing any of it.",
                "page_too_large",
            )
        ids = tuple(item.get("id") if isinstance(item, dict) else None for item in page.items)
        if not any(isinstance(i, str) for i in ids):
            ids = ()  # a page without a single id says nothing about where the walk is
        repeated = page.next_url is not None and _canonical(page.next_url) in seen_urls
        if repeated or (ids and ids in seen_pages):
            return True
        if page.next_url is not None:
            seen_urls.add(_canonical(page.next_url))
        if ids:
            seen_pages.add(ids)
        return False

    def _take(self, direction, page, prepared, tally, next_url, may_stop):
        """Store one page (its ``prepared`` records) with its checkpoint, count it, log one line; its counts."""
        _, invalid = page.normalized(direction)
        counts = self._store(direction, prepared, invalid, next_url, may_stop)
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
        return counts

    def _last_full(self, direction):
        """When the last complete full walk of ``direction`` ended (ms), or None."""
        self.round_trips += 1
        return self.store.last_full_walk(direction)

    def _mode_for(self, last_full):
        if self.mode is Mode.FULL or last_full is None:
            return Mode.FULL
        grace = self.settings.reconcile_full_interval + self.settings.reconcile_interval
        return Mode.FULL if time.time() * 1000 - last_full >= grace * 1000 else Mode.INCREMENTAL

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

    def _store(self, direction, prepared, invalid, next_url, may_stop):
        """Store one page, move the checkpoint and renew the lock: one script call, one round trip.

        The checkpoint becomes the next page's URL; when this page may end an incremental walk
        (the last of a streak that changed nothing) the script keeps it only if the page changed
        something, as the walk then goes on. Fails the run with ``lock_lost`` (nothing written)
        when the lock is no longer this run's.
        """
        checkpoint = None
        if next_url:
            checkpoint = json.dumps({"url": next_url, "saved": int(time.time() * 1000)})
        page = Page(direction, checkpoint, self.settings.reconcile_full_interval * 1000,
                    self.lock.token, self.lock.ttl_ms,
                    {f"invalid:reconcile:{reason}": n for reason, n in invalid.items()},
                    keep_if_changed=may_stop)
        result = self.store.upsert(prepared, via=Via.RECONCILE, page=page)
        self.round_trips += result.round_trips
        if result.lock_lost:
            raise LockLost(
                "The reconciliation lock expired or was taken over; stopped to avoid two runs at once."
            )
        return result.counts()

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
        except BudgetExhausted:
            raise
        except MetriportError as exc:
            self.webhook = {"error": exc.code}
            log.warning("reconcile: webhook status check failed: %s", exc.code)

    def _run(self, started, ended, outcome, error):
        walked = {walk.mode for walk in self.walks.values()}
        return Run(
            outcome=outcome,
            mode=Mode.FULL if Mode.FULL in walked else self.mode,
            started=iso(started),
            ended=iso(ended),
            seconds=round(ended - started, 3),
            walks=dict(self.walks),
            requests=self.client.requests,
            retries=self.client.retries,
            round_trips=self.round_trips,
            webhook=self.webhook,
            error=error,
        )

    def _record(self, run):
        """Add the run to the run log; a Redis outage only costs the record."""
        if self.store is None:
            return
        try:
            RunLog(self.store).append(run)
        except StoreUnavailable as exc:
            log.warning("reconcile: could not record the run (%s)", exc.code)


def run(settings, mode=Mode.INCREMENTAL, directions=None, client_options=None, deadline=None,
        handoff=False):
    """One reconciliation run with ``settings``; returns its ``Run``.

    ``deadline`` (seconds) shortens ``RECONCILE_DEADLINE`` for this run (an RQ job's timeout).
    ``handoff`` marks the immediate run a webhook queued (see ``Reconciliation._take_lock``).
    """
    return Reconciliation(settings, mode, directions, client_options, deadline, handoff).run()


def last_full_walk(store, directions):
    """When the oldest of the last complete full walks of ``directions`` ended.

    Epoch seconds, or None when some direction never had one (the clock then walks in full at
    once). Raises ``StoreUnavailable`` when Redis does not answer: the clock waits it out.
    """
    ended = [store.last_full_walk(direction) for direction in directions]
    if any(value is None for value in ended):
        return None
    return min(ended) / 1000


@contextlib.contextmanager
def _collect_less_often():
    """Run the cyclic garbage collector less often while walking; restored afterwards.

    A page parses into ~6,000 dicts and lists that live until the page is stored and hold no
    cycles (reference counting frees them). At the default threshold the collector ran about
    ten times per page, each time scanning the pages still alive: 15-20% of the walk's CPU
    (bench/RESULTS.md). Every 10,000 allocations it costs next to nothing, and cycles are still
    collected.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(WALK_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _canonical(url):
    """``url`` with its query parameters sorted: the same cursor however the server orders them."""
    parts = urlsplit(url)
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, query, ""))
