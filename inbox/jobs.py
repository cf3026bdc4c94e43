"""The job queue as an operator sees it: depth, failed jobs with their error line, requeue.

Shared by the console's jobs page, ``GET /metrics`` and ``metriport-inbox jobs``. Jobs carry
ids and modes only (``worker.jobs``), so listing their arguments shows no message content; the
error line is the last line of the job's traceback, which our errors keep free of content.
"""

import dataclasses

from rq import Queue
from rq.job import Job

from inbox.connection import translate_errors

#: how much of an error line is shown
ERROR_CHARS = 300


def _cron_history_key(name):
    """The sorted set where rq cron records the jobs it enqueued for entry ``name`` (scored by
    enqueue time); the same key from rq 2.11 (``CronJob.job_history_key``) to rq 3."""
    return f"rq:cron_job:{name}:jobs"


@dataclasses.dataclass(frozen=True)
class FailedJob:
    """One job in the failed registry."""

    id: str
    function: str
    args: tuple
    kwargs: dict
    error: str
    ended_at: float | None


class Jobs:
    """The RQ queue of one namespace on the queue's Redis."""

    def __init__(self, settings, connection):
        self.queue = Queue(settings.queue_name, connection=connection)

    def depth(self):
        """Jobs waiting in the queue."""
        with translate_errors("read the job queue"):
            return self.queue.count

    def failed_count(self):
        with translate_errors("read failed jobs"):
            return self.queue.failed_job_registry.count

    def failed(self, limit=100):
        """Up to ``limit`` failed jobs, newest first."""
        with translate_errors("read failed jobs"):
            registry = self.queue.failed_job_registry
            ids = registry.get_job_ids(0, -1)[-limit:][::-1]
            jobs = Job.fetch_many(ids, connection=self.queue.connection)
            return [_failed(job) for job in jobs if job is not None]

    def schedule(self, settings):
        """``{mode: (last enqueued, next due)}`` in epoch seconds from the clock's history.

        The clock (``worker.schedule``) names its entries ``<queue>-reconcile-<mode>``; a mode
        the clock never enqueued is absent (no clock is running, or it never started).
        """
        intervals = {"incremental": settings.reconcile_interval,
                     "full": settings.reconcile_full_interval}
        found = {}
        with translate_errors("read the schedule"):
            for mode, interval in intervals.items():
                key = _cron_history_key(f"{self.queue.name}-reconcile-{mode}")
                newest = self.queue.connection.zrange(key, 0, 0, desc=True, withscores=True)
                if newest:
                    found[mode] = (newest[0][1], newest[0][1] + interval)
        return found

    def requeue(self, job_id):
        """Put a failed job back on the queue; False when no such failed job exists."""
        with translate_errors("requeue a job"):
            registry = self.queue.failed_job_registry
            if job_id not in registry.get_job_ids():
                return False
            registry.requeue(job_id)
            return True


def _failed(job):
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job.exc_info or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    ended = job.ended_at.timestamp() if job.ended_at else None
    return FailedJob(
        id=job.id,
        function=(job.func_name or "").rsplit(".", 1)[-1],
        args=tuple(str(a) for a in job.args),
        kwargs={k: str(v) for k, v in job.kwargs.items()},
        error=(lines[-1] if lines else "")[:ERROR_CHARS],
        ended_at=ended,
    )
