"""The namespace's RQ queue, and removing every trace of it from a shared Redis.

RQ keeps a queue's finished and failed jobs for up to a year and its registries without expiry;
the demo and the tests, which run a throwaway namespace on a Redis that may be shared, delete
them when they end. Results and worker records that RQ expires by itself within minutes are
left to expire.
"""

from rq import Queue

#: the clock's entries (``worker.schedule``): the two reconcile modes and retention's expiry
CRON_ENTRIES = ("full", "incremental", "expire")


def cron_entry_name(queue_name, entry):
    """The name of the clock's entry ``entry``, per queue: RQ keeps a history per name."""
    return f"{queue_name}-{entry}" if entry == "expire" else f"{queue_name}-reconcile-{entry}"


def purge(queue_name, connection):
    """Delete the queue ``queue_name``, its jobs and results, its registries and its clock history."""
    queue = Queue(queue_name, connection=connection)
    job_ids = set(queue.job_ids)
    for registry in (queue.failed_job_registry, queue.finished_job_registry,
                     queue.started_job_registry, queue.scheduled_job_registry,
                     queue.deferred_job_registry, queue.canceled_job_registry):
        # ids only: RQ 2's finished-job registry cannot remove entries one by one
        job_ids.update(registry.get_job_ids())
        connection.delete(registry.key)
    queue.delete(delete_jobs=True)
    for job_id in job_ids:
        connection.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    for name in (cron_entry_name(queue_name, entry) for entry in CRON_ENTRIES):
        connection.delete(f"rq:cron_job:{name}:jobs")
        connection.zrem("rq:cron_jobs", name)
