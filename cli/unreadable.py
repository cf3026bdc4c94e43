"""``metriport-inbox unreadable-webhooks``: the signed webhook bodies whose message could not be read.

The receiver keeps such a body (sealed when encryption is on, for 7 days) and queues an
immediate reconcile run instead of refusing it (docs/webhook.md). The list shows ids, reasons,
sizes and ages only; ``--show ID`` prints one body, escaped for the terminal, on explicit request:
it may hold message content, so it is never logged and never shown unasked.
"""

import datetime

import click

from cli.environment import load_settings
from cli.printable import escape
from inbox.store import Store


@click.command()
@click.option("--show", "show_id", metavar="ID", help="Print the kept body with this id.")
def unreadable_webhooks(show_id):
    """List the kept unreadable message.received bodies, or print one with --show ID."""
    settings = load_settings()
    store = Store(settings)
    if show_id is not None:
        body = store.quarantined_body(show_id)
        if body is None:
            raise click.ClickException(f"No kept body {escape(show_id)!r} (expired or never kept).")
        click.echo(escape(body.decode("utf-8", "replace")))
        return
    kept = store.quarantined()
    for kept_id, reason, at_ms, size, ttl in kept:
        when = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.timezone.utc)
        click.echo(f"{when:%Y-%m-%dT%H:%M:%SZ} {escape(kept_id)} {reason} {size} bytes, "
                   f"expires in {max(ttl, 0) // 3600} h")
    click.echo(f"{len(kept)} kept", err=True)
