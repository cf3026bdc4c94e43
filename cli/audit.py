"""``metriport-inbox audit``: who read which messages through the mirror and feed HTTP APIs."""

import datetime
import json
from urllib.parse import quote

import click

from cli.environment import load_settings
from cli.environment import redis_for
from cli.printable import escape
from inbox import audit as trail
from inbox.connection import Connections
from inbox.rediskeys import RedisKeys


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="How many of the newest entries to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(limit, as_json):
    """Show the newest audit entries: time, API key fingerprint, action, ids or query."""
    settings = load_settings()
    with redis_for(settings) as settings:
        entries = trail.read(Connections(settings).store, RedisKeys(settings.namespace), limit=limit)
    for entry in entries:
        if as_json:
            click.echo(escape(json.dumps(entry.as_dict(), sort_keys=True, ensure_ascii=False)))
            continue
        click.echo(_line(entry))


def _line(entry):
    """``<time> <who> <action> n=<count> [invalid=<n>] [query…] [ids]``: five ids, then an ellipsis.

    Query values are percent-encoded (a space cannot fake another field) and the whole line is
    escaped (no control character reaches the terminal), whatever the stream holds.
    """
    when = datetime.datetime.fromtimestamp(entry.at_ms / 1000, datetime.timezone.utc)
    parts = [f"{when:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z", entry.who, entry.action, f"n={entry.count}"]
    if entry.invalid:
        parts.append(f"invalid={entry.invalid}")
    parts.extend(f"{name}={quote(str(value), safe='@:/')}" for name, value in sorted(entry.query.items()))
    if entry.ids:
        parts.append(",".join(entry.ids[:5]) + (",…" if len(entry.ids) > 5 else ""))
    return escape(" ".join(parts))
