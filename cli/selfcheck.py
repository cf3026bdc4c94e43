"""``metriport-inbox selfcheck``: prove the settings load and the store answers."""

import click

from cli.environment import load_settings
from cli.environment import redis_for
from inbox.connection import Connections
from inbox.connection import translate_errors
from inbox.settings import redact_url


@click.command()
def selfcheck():
    """Load the settings, reach Redis, and report what is configured."""
    settings = load_settings()
    with redis_for(settings) as settings:
        with translate_errors("ping"):
            Connections(settings).store.ping()
        click.echo(f"redis: ok ({redact_url(settings.redis_url)})")
        click.echo(f"namespace: {settings.namespace}")
        click.echo(f"webhook keys: {len(settings.webhook_keys)}")
        click.echo(f"encryption: {'on' if settings.encryption_on else 'off'}")
