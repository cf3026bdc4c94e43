"""RQ entry points: what ``queue.enqueue("worker.jobs.<name>", ...)`` runs in a worker.

Jobs take ids and modes only (never message content) and read the settings from the worker's
environment. A reconcile run that fails raises ``MetriportError``/``StoreUnavailable`` so RQ
files it under failed jobs; a skipped or budget-stopped run returns its summary like a success.
"""

import logging

from inbox.errors import RunFailed
from inbox.errors import MetriportError
from inbox.settings import Settings

log = logging.getLogger("worker.jobs")
#: seconds a reconcile run keeps between its own deadline and its RQ job's timeout
JOB_TIMEOUT_MARGIN = 10


def _tag_logs():
    """Stamp this job's log lines with its RQ job id, as a request's carry its request id."""
    from rq import get_current_job

    from inbox import logs

    job = get_current_job()
    if job is not None:
        logs.REQUEST_ID.set(job.id)


def reconcile(mode="incremental", directions=None, handoff=False):
    """One reconciliation run (see ``worker.reconcile``); returns its record (``Run.as_dict``).

    The run ends itself (and releases its lock) before RQ's job timeout would kill it: a killed
    run leaves its lock to expire on its own. ``handoff`` is set on the immediate run a webhook
    queues (``receiver/webhook.py``): finding the lock held, it asks the holder to walk again.
    """
    from rq import get_current_job

    from inbox.runs import RunOutcome
    from worker.reconcile import run

    _tag_logs()
    job = get_current_job()
    timeout = job.timeout if job is not None and isinstance(job.timeout, (int, float)) else None
    deadline = max(1, timeout - JOB_TIMEOUT_MARGIN) if timeout and timeout > 0 else None
    result = run(Settings.from_env(), mode=mode, directions=directions, deadline=deadline,
                 handoff=handoff)
    if result.outcome is RunOutcome.FAILED:
        raise RunFailed(result.error["detail"], result.error["code"])
    return result.as_dict()


def expire():
    """One retention run (``inbox.retention``): old messages lose their content; the report."""
    from inbox.retention import expire as run_expiry
    from inbox.store import Store

    report = run_expiry(Store(Settings.from_env()))
    log.info("expire: %s", report.line())
    return report.summary()


def fetch_message(message_id):
    """Fetch one message by id (a webhook that carried only the id) and store it ``via=fetch``.

    Returns ``{"id", "outcome"}``; raises ``MetriportError`` (code ``not_found`` for a 404) so RQ
    records the failure.
    """
    from inbox.normalize import normalize
    from inbox.store import Store
    from inbox.store import Via
    from worker.client import MetriportClient

    _tag_logs()
    settings = Settings.from_env()
    with MetriportClient(settings) as client:
        body = client.get_message(message_id)
    record = normalize(body)
    if record.id != message_id:
        raise MetriportError(
            f"Metriport answered Get Message {message_id} with another message's id.", "id_mismatch"
        )
    outcome = Store(settings).upsert([record], via=Via.FETCH).outcomes[0]
    log.info("fetch %s: %s", message_id, outcome.value)
    return {"id": message_id, "outcome": outcome.value}
