"""``metriport-inbox trace`` and ``metriport-inbox jobs``: the console's answers on the command line.

``trace <id>`` prints the same history as the console's message page (``inbox.history``);
``jobs`` prints the queue depth and the failed jobs with their error line, and ``jobs --requeue``
puts failed jobs back on the queue. Ids, times, channels, statuses and codes only.
"""

import datetime
import json

import click

from cli.environment import load_settings
from inbox import history
from inbox.connection import Connections
from inbox.errors import InboxError
from inbox.errors import InvalidMessage
from inbox.jobs import Jobs


def _when(epoch_seconds):
    if epoch_seconds is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"


@click.command()
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def trace(message_id, as_json):
    """One message's history: versions, deliveries, fetches, feed entries and audit reads."""
    settings = load_settings()
    try:
        found = history.trace(settings, Connections(settings).store, message_id)
    except ValueError:
        raise InvalidMessage("A message id is 1-128 of A-Z a-z 0-9 . _ : -.", "invalid_id") from None
    if as_json:
        click.echo(json.dumps(found.as_dict(), sort_keys=True))
        return
    for line in trace_lines(found):
        click.echo(line)


def trace_lines(found):
    """The text form of a ``History``: one line per event, then feed entries and reads."""
    yield f"message {found.id}" + ("" if found.exists else " (not stored)")
    for e in found.events:
        digest = e.digest + (" changed" if e.digest_changed else "")
        yield (f"  {_when(e.at_ms / 1000)}  {e.event:<16} {e.via:<9} v{e.version:<3} "
               f"{e.status or '-':<12} digest {digest or '-'}  delivery {e.delivery or '-'}"
               f"  feed {e.feed_id or '-'}").rstrip()
    deliveries = sorted({e.delivery for e in found.deliveries})
    yield f"deliveries: {', '.join(deliveries) or 'none'}; fetches: {len(found.fetches)}"
    for f in found.feed:
        yield f"feed {f['entry']}: {f['event']} v{f['version']} via {f['via']}" + (
            "" if f["present"] else " (trimmed)")
    for r in found.reads:
        yield f"read {_when(r.at_ms / 1000)} by {r.who}: {r.action}"
    if not found.reads:
        yield "reads: none"


@click.command()
@click.option("--requeue", "requeue_ids", multiple=True, metavar="JOB_ID",
              help="Put this failed job back on the queue (repeatable).")
@click.option("--requeue-all", is_flag=True, help="Put every failed job back on the queue.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def jobs(requeue_ids, requeue_all, as_json):
    """Queue depth and failed fetch/reconcile jobs with their error line; requeue them."""
    settings = load_settings()
    queue = Jobs(settings, Connections(settings).queue)
    failed = queue.failed(limit=10_000)
    if requeue_all:
        requeue_ids = [job.id for job in failed]
    if requeue_ids:
        missing = [job_id for job_id in requeue_ids if not queue.requeue(job_id)]
        for job_id in requeue_ids:
            click.echo(f"{job_id}: {'not a failed job' if job_id in missing else 'requeued'}")
        if missing:
            raise InboxError(f"{len(missing)} of the ids are not failed jobs.", "job_not_found")
        return
    depth = queue.depth()
    if as_json:
        click.echo(json.dumps({"depth": depth, "failed": [
            {"id": j.id, "function": j.function, "args": list(j.args), "kwargs": j.kwargs,
             "error": j.error, "endedAt": j.ended_at} for j in failed]}, sort_keys=True))
        return
    click.echo(f"queue {settings.queue_name}: {depth} waiting, {len(failed)} failed")
    for job in failed:
        arguments = ", ".join([*job.args, *(f"{k}={v}" for k, v in job.kwargs.items())])
        click.echo(f"  {job.id}  {_when(job.ended_at)}  {job.function}({arguments})  {job.error}")
