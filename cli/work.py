"""``metriport-inbox worker`` and ``metriport-inbox reconcile``: the worker side of the service.

Both import the worker lazily, inside the command, so ``metriport-inbox --help`` and the other
commands never pay for requests or RQ, and nothing here imports Flask.
"""

import json
import sys

import click

from cli.environment import load_settings
from inbox.runs import RunOutcome
from inbox.settings import DIRECTIONS

#: exit status of ``reconcile --once`` per outcome (2 stays configuration errors, as everywhere)
EXIT_STATUS = {RunOutcome.COMPLETED: 0, RunOutcome.FAILED: 1, RunOutcome.BUDGET_EXHAUSTED: 3,
               RunOutcome.SKIPPED: 4}


def _log_to_stderr():
    """JSON lines on stderr through the project's one logging configuration (RQ's own too:
    with a handler on the root logger, RQ adds none of its own)."""
    from inbox import logs

    logs.configure()


def _start_logging(settings):
    """JSON logging first, so the encryption warning is a JSON line like every other one."""
    import logging

    from inbox.crypto import encryption_warning

    _log_to_stderr()
    warning = encryption_warning(settings)
    if warning:
        logging.getLogger("metriport_inbox.worker").warning(warning)


@click.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty instead of waiting.")
@click.option("--cron", "clock", is_flag=True,
              help="Run the clock (rq cron with worker/schedule.py) instead of a worker.")
def worker(burst, clock):
    """Run an RQ worker on this namespace's queue (or, with --cron, the reconciliation schedule).

    Both wait out Redis outages of any length (also at start), logging one line when Redis is
    lost and one when it is back; they end on SIGTERM/SIGINT, or on a configuration error
    (a refused Redis password included) with one line and exit code 2.
    """
    settings = load_settings()
    from inbox.connection import Connections
    from worker.client import require_api_key

    require_api_key(settings)
    _start_logging(settings)
    connections = Connections(settings)
    connections.queue  # a cluster URL for the queue is a configuration error: say so now
    if clock:
        from worker.schedule import scheduler

        scheduler(settings, connections).start()
        return
    from worker.rqworker import work

    variable = "RQ_REDIS_URL" if settings.rq_redis_url else "REDIS_URL"
    work(settings.queue_name, connections.queue, variable, burst=burst)


@click.command()
@click.option("--once", is_flag=True,
              help="Accepted for scripts: one run in the foreground is what this command does "
                   "(scheduled runs go through the worker and the clock).")
@click.option("--full", is_flag=True, help="Walk every page, not only until nothing changes.")
@click.option("--direction", type=click.Choice([d.value for d in DIRECTIONS]),
              help="Walk one direction only (default: RECONCILE_DIRECTIONS).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, as the last line.")
def reconcile(once, full, direction, as_json):
    """Walk Metriport's List Messages once, in the foreground, and store what is missing or changed.

    Exit status: 0 completed, 1 failed, 3 stopped at the request budget (the next run resumes),
    4 skipped because another run holds the lock, 2 configuration error.
    """
    settings = load_settings()
    from worker.client import require_api_key
    from worker.reconcile import run

    require_api_key(settings)
    _start_logging(settings)
    summary = run(settings, mode="full" if full else "incremental",
                  directions=(direction,) if direction else None).as_dict()
    if as_json:
        click.echo(json.dumps(summary, separators=(",", ":")))
    else:
        click.echo(
            f"{summary['outcome']}: {summary['mode']} run, {summary['pages']} pages, "
            f"{summary['requests']} requests, {summary['seen']} seen, {summary['created']} created, "
            f"{summary['updated']} updated, {summary['duplicates']} duplicates, "
            f"{summary['invalid']} invalid"
        )
    if "error" in summary:
        click.echo(f"error: {summary['error']['code']}: {summary['error']['detail']}", err=True)
    sys.exit(EXIT_STATUS[RunOutcome(summary["outcome"])])
