"""The reconciliation schedule, for ``rq cron worker.schedule`` or ``metriport-inbox worker --cron``.

Two entries on the namespace's queue: a full run every ``RECONCILE_FULL_INTERVAL`` and an
incremental run every ``RECONCILE_INTERVAL``. The clock (``Clock``, what ``worker --cron`` runs)
enqueues the incremental run at start and the full run only when the last complete full walk is
older than ``RECONCILE_FULL_INTERVAL`` (at once on a fresh deployment): redeploying the clock
does not spend a full walk's list requests each time. Two clocks, or a run slower than the
interval, cannot overlap runs: the job's lock makes the second one return ``skipped``.
With ``INBOX_RETENTION_DAYS`` set, a third entry runs retention's expiry every hour; it resumes
where an interrupted run stopped. Each job may run at most 90% of its interval and may wait in
the queue at most one interval (a run still queued when the next is due is dropped instead of
piling up).

The clock outlives Redis outages: it waits with backoff (one log line lost, one back), then
enqueues whatever fell due meanwhile and carries on. Plain ``rq cron worker.schedule`` also
works, but enqueues both runs at every start and dies on the first Redis error.
"""

import datetime
import logging
import time

from rq import cron
from rq.exceptions import StopRequested

from inbox.retention import EXPIRE_INTERVAL
from inbox.settings import Settings
from inbox.store import Store
from worker.jobs import expire
from worker.jobs import reconcile
from worker.outage import Outage
from worker.queue import cron_entry_name
from worker.outage import is_outage
from worker.reconcile import last_full_walk

log = logging.getLogger("worker.schedule")


def entries(settings):
    """The ``register`` keyword arguments of each scheduled job, full run first; with
    ``INBOX_RETENTION_DAYS`` set, an expiry run every ``EXPIRE_INTERVAL`` too."""
    scheduled = [
        _entry("full", settings.reconcile_full_interval, settings.queue_name),
        _entry("incremental", settings.reconcile_interval, settings.queue_name),
    ]
    if settings.retention_days:
        scheduled.append(dict(
            _entry("full", EXPIRE_INTERVAL, settings.queue_name),
            func=expire, kwargs={}, name=cron_entry_name(settings.queue_name, "expire"),
        ))
    return scheduled


def _entry(mode, interval, queue_name):
    """One cron entry; named after the namespace's queue, so two accounts' clocks never mix."""
    return dict(
        func=reconcile,
        queue_name=queue_name,
        kwargs={"mode": mode},
        interval=interval,
        job_timeout=max(30, int(interval * 0.9)),
        ttl=interval,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        name=cron_entry_name(queue_name, mode),
    )


def scheduler(settings, connections):
    """A ``Clock`` on ``connections.queue`` with this project's entries registered.

    The store's Redis (``connections.store``) is where it reads when the last full walk ended.
    """
    clock = Clock(settings, connections)
    for entry in entries(settings):
        clock.register(**entry)
    return clock


class Clock(cron.CronScheduler):
    """RQ's cron scheduler with a first full run that waits its turn and a loop that rides out
    Redis outages."""

    def __init__(self, settings, connections):
        super().__init__(connection=connections.queue)
        self.settings = settings
        self.connections = connections
        self.queue_outage = Outage("RQ_REDIS_URL" if settings.rq_redis_url else "REDIS_URL")
        self.store_outage = Outage("REDIS_URL")
        self._placed = False
        self._born = False

    def place_full_run(self):
        """Schedule the full entry one interval after the last complete full walk, if it had one."""
        # a cluster client reads the slot map when created: inside the retried step
        store = Store(self.settings, client=self.connections.store)
        ended = last_full_walk(store, self.settings.reconcile_directions)
        full = next(job for job in self.get_jobs() if job.kwargs.get("mode") == "full")
        if ended is not None and time.time() - ended < full.interval:
            full.set_enqueue_time(datetime.datetime.fromtimestamp(ended, datetime.timezone.utc))
            log.info("clock: last full walk ended %.0f s ago; next full run in %.0f s",
                     time.time() - ended, full.interval - (time.time() - ended))
        self._placed = True

    def tick(self):
        """One round: enqueue what is due, record it, heartbeat; Redis errors propagate."""
        if not self._placed:
            try:
                self.place_full_run()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.store_outage.lost(exc)
                return False
            self.store_outage.back()
        if not self._born:
            self.register_birth()
            self._born = True
        if self.enqueue_jobs():
            self.save()
        self.heartbeat()
        return True

    def start(self):
        """Run until SIGTERM/SIGINT; Redis outages are waited out, never fatal."""
        self.log.info("CronScheduler %s: starting...", self.name)
        self._install_signal_handlers()
        try:
            while True:
                try:
                    if not self.tick():
                        continue
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    self.queue_outage.lost(exc)
                    continue
                self.queue_outage.back()
                time.sleep(self.calculate_sleep_interval())
        except (KeyboardInterrupt, StopRequested):
            self.log.info("CronScheduler %s: stop requested", self.name)
        finally:
            try:
                self.register_death()
            except Exception as exc:  # a clock stopped during an outage leaves its entry to expire
                if not is_outage(exc):
                    raise


# ``rq cron worker.schedule`` imports this module and picks up what it registers here.
for _entry_kwargs in entries(Settings.from_env()):
    cron.register(**_entry_kwargs)
