"""``metriport-inbox expire``, ``backup``, ``restore`` and ``forget``: the data's lifecycle.

They talk to the Redis that ``REDIS_URL`` names (they act on a running deployment, so there is no
embedded fallback) and fail with one line when it does not answer. Output holds counts, ids and
codes, never message content.
"""

import json

import click

from cli.environment import load_settings
from inbox.errors import InboxError
from inbox.retention import DEFAULT_BATCH


@click.command()
@click.option("--once", is_flag=True,
              help="Accepted for scripts: one expiry in the foreground is what this command does "
                   "(the clock schedules it hourly).")
@click.option("--batch", default=DEFAULT_BATCH, show_default=True, type=click.IntRange(1, 1000),
              help="Records read and expired per Redis call.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, as the last line.")
def expire(once, batch, as_json):
    """Drop the content of messages older than INBOX_RETENTION_DAYS, keeping tombstones.

    Each expired message leaves the indexes and is announced once in the feed (event expired).
    Resumable: an interrupted run is finished by the next one.
    """
    from inbox.retention import expire as run_expiry
    from inbox.store import Store

    settings = load_settings()
    report = run_expiry(Store(settings), batch=batch)
    if report.resumed_after:
        click.echo(f"resumed after id {report.resumed_after}", err=True)
    click.echo(json.dumps(report.summary(), sort_keys=True) if as_json else report.line())


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def backup(path):
    """Write a consistent snapshot of this namespace to PATH (gzip'd JSON lines).

    Records (sealed as stored), feed and consumer groups, dead letters, counters, run state,
    delivery ledger and audit trail; not the RQ queue. Safe while the service runs.
    """
    from inbox.backup import backup as take
    from inbox.connection import Connections

    settings = load_settings()
    summary = take(Connections(settings).store, settings.namespace, path)
    click.echo(
        f"backup of namespace {summary.namespace} to {path}: {summary.keys} keys, "
        f"{summary.records} records, feed {summary.feed_entries} entries up to "
        f"{summary.feed_position or '-'}"
    )


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def restore(path):
    """Restore the backup in PATH into this namespace, which must be empty.

    The file is verified first: a damaged or truncated file writes nothing. Indexes are rebuilt
    from the records. Stop the service's writers (web, worker, clock) while it runs.
    """
    from inbox.backup import restore as put_back
    from inbox.connection import Connections
    from inbox.store import Store

    settings = load_settings()
    client = Connections(settings).store
    store = Store(settings, client=client)
    summary = put_back(client, settings.namespace, path, store.reindex)
    click.echo(
        f"restored {path} (taken {summary.created}) into namespace {summary.namespace}: "
        f"{summary.keys} keys, {summary.records} records, {summary.indexed} indexed, feed "
        f"{summary.feed_entries} entries up to {summary.feed_position or '-'}"
    )


@click.command()
@click.option("--patient", required=True, help="The patient id whose messages are removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(patient, yes):
    """Remove every message, index entry and feed entry of one patient, for good.

    Reconciliation will not store those messages again (a marker without content or patient
    stays per message id). The run is written to the audit trail with the count.
    """
    from inbox.connection import Connections
    from inbox.forget import forget_patient
    from inbox.normalize import valid_id

    if not valid_id(patient):
        raise click.BadParameter("a patient id is 1-128 of A-Z a-z 0-9 . _ : -",
                                 param_hint="--patient")
    settings = load_settings()
    if not yes:
        try:
            confirmed = click.confirm(f"Remove every message of patient {patient} from namespace "
                                      f"{settings.namespace}? This cannot be undone", err=True)
        except click.Abort:  # no answer (stdin closed, Ctrl-C): the same as no
            confirmed = False
        if not confirmed:
            raise InboxError("Nothing was removed: not confirmed (answer y, or pass --yes).",
                             "not_confirmed")
    done = forget_patient(settings, Connections(settings).store, patient)
    click.echo(done.line())
