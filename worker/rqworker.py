"""``metriport-inbox worker``: an RQ worker that outlives Redis outages of any length.

RQ's own worker retries a lost connection while it waits for jobs, but logs one error per retry,
quits with a traceback on a timeout or on a connection lost around a job, and dies with a
traceback when Redis is down at start. Here

- while idle, any Redis failure (in the dequeue, the heartbeat or the state update) is caught
  around RQ's dequeue step and waited out with ``Outage`` (one line lost, one line back);
- anything else that ends RQ's work loop on a Redis failure (a connection lost mid-job, at
  start, at teardown) ends only that ``Worker``: the loop below waits for Redis and starts a new
  one, and RQ's traceback for it is filtered out of the log (the job itself is retried by the
  schedule; a reconcile run resumes from its checkpoint);
- SIGTERM/SIGINT stop it at any point, also in the middle of an outage;
- a refused password ends the process with one line (``ConfigError``, exit 2).
"""

import logging
import signal
import time

import rq
from rq.exceptions import StopRequested

from worker.outage import Outage
from worker.outage import RedisLost
from worker.outage import is_outage

#: pause of the command channel's thread between two reconnection attempts
PUBSUB_RETRY_SECONDS = 2.0


class _Queue(rq.Queue):
    """RQ's queue whose dequeue reports an outage as ``RedisLost``, past RQ's retry loop."""

    @classmethod
    def dequeue_any(cls, *args, **kwargs):
        try:
            return super().dequeue_any(*args, **kwargs)
        except Exception as exc:
            if is_outage(exc):
                raise RedisLost(str(exc)) from exc
            raise


class InboxWorker(rq.Worker):
    """An RQ worker whose idle loop waits out Redis outages with one log line per change."""

    queue_class = _Queue

    def __init__(self, *args, outage, **kwargs):
        super().__init__(*args, **kwargs)
        self.outage = outage
        self.stopping = False

    def handle_warm_shutdown_request(self):
        self.stopping = True
        super().handle_warm_shutdown_request()

    def heartbeat(self, timeout=None, pipeline=None):
        try:
            super().heartbeat(timeout, pipeline)
        except Exception as exc:
            if is_outage(exc):
                raise RedisLost(str(exc)) from exc
            raise
        if pipeline is None:  # a pipelined heartbeat has not reached Redis yet
            self.outage.back()

    def _pubsub_exception_handler(self, exc, pubsub, pubsub_thread):
        """The command channel's thread: wait out an outage quietly (the main loop logs it)."""
        if is_outage(exc):
            time.sleep(PUBSUB_RETRY_SECONDS)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        while True:
            try:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self.outage.lost(exc)
                continue
            self.outage.back()
            return result


class _QuietOutages(logging.Filter):
    """Drops RQ's "unhandled exception, quitting" records caused by a Redis outage.

    The outage gets its own single line from ``Outage``; a real bug keeps its traceback.
    """

    def __init__(self):
        super().__init__()
        self.last = None

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_outage(exc):
            self.last = exc
            return False
        return True


def _stop(signum, frame):
    raise StopRequested()


def work(queue_name, connection, variable, burst=False):
    """Run workers on ``queue_name`` until stopped (or, with ``burst``, until the queue is empty).

    ``variable`` names the queue's Redis setting for the log lines (``RQ_REDIS_URL``).
    """
    outage = Outage(variable)
    quiet = _QuietOutages()
    rq_log = logging.getLogger("rq.worker")
    rq_log.addFilter(quiet)
    try:
        while True:
            # RQ installs its own handlers inside work(); between two workers, ours stop us.
            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            outage.wait_until_up(connection)
            worker = InboxWorker([queue_name], connection=connection, outage=outage)
            quiet.last = None
            try:
                worker.work(burst=burst)
            except Exception as exc:
                if worker.stopping:
                    return
                if not is_outage(exc):
                    raise
                outage.lost(exc)
                continue
            if worker.stopping or (burst and quiet.last is None):
                return
            # RQ's loop ended on a Redis failure it could not ride out (mid-job or a timeout)
            outage.lost(quiet.last or RedisLost("the worker loop stopped"))
    except StopRequested:
        return
    finally:
        rq_log.removeFilter(quiet)
