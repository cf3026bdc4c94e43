"""``metriport-inbox audit``: who read which messages through the mirror and feed HTTP APIs."""

import datetime
import json

import click

from cli.environment import load_settings
from cli.environment import redis_for
from inbox import audit as trail
from inbox.connection import Connections
from inbox.keys import Keys


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="How many of the newest entries to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(limit, as_json):
    """Show the newest audit entries: time, API key fingerprint, action, ids or query."""
    settings = load_settings()
    with redis_for(settings) as settings:
        entries = trail.read(Connections(settings).store, Keys(settings.namespace), limit=limit)
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry.as_dict(), sort_keys=True))
            continue
        click.echo(_line(entry))


def _line(entry):
    """``<time> <who> <action> n=<count> [query…] [ids]``: the first five ids, then an ellipsis."""
    when = datetime.datetime.fromtimestamp(entry.at_ms / 1000, datetime.timezone.utc)
    parts = [f"{when:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z", entry.who, entry.action, f"n={entry.count}"]
    parts.extend(f"{name}={value}" for name, value in sorted(entry.query.items()))
    if entry.ids:
        parts.append(",".join(entry.ids[:5]) + (",…" if len(entry.ids) > 5 else ""))
    return " ".join(parts)
