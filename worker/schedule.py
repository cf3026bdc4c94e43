"""The reconciliation schedule, for ``rq cron worker.schedule`` or ``metriport-inbox worker --cron``.

Two entries on queue ``inbox``: a full run every ``RECONCILE_FULL_INTERVAL`` and an incremental
run every ``RECONCILE_INTERVAL``. ``rq cron`` enqueues interval jobs as soon as it starts, the
full one first, so a fresh deployment is walked in full at once. Two clocks, or a run slower than
the interval, cannot overlap runs: the job's lock makes the second one return ``skipped``.
With ``INBOX_RETENTION_DAYS`` set, a third entry runs retention's expiry every hour; it resumes
where an interrupted run stopped. Each job may run at most 90% of its interval and may wait in
the queue at most one interval (a run still queued when the next is due is dropped instead of
piling up).
"""

from rq import cron

from inbox.retention import EXPIRE_INTERVAL
from inbox.settings import Settings
from worker.jobs import expire
from worker.jobs import reconcile


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
            func=expire, kwargs={}, name=f"{settings.queue_name}-expire",
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
        name=f"{queue_name}-reconcile-{mode}",
    )


def scheduler(settings, connection):
    """A ``CronScheduler`` on ``connection`` with this project's entries registered."""
    scheduler = cron.CronScheduler(connection=connection)
    for entry in entries(settings):
        scheduler.register(**entry)
    return scheduler


# ``rq cron worker.schedule`` imports this module and picks up what it registers here.
for _entry_kwargs in entries(Settings.from_env()):
    cron.register(**_entry_kwargs)
