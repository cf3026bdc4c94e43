"""What every command needs first: the settings, and a Redis to talk to.

``redis_for(settings)`` yields settings whose ``REDIS_URL`` points at a live server: the one
configured, or, when ``REDIS_URL`` is not set at all, a private embedded redis-server that is
stopped when the block ends (also on Ctrl-C).
"""

import contextlib
import os

import click

from inbox.crypto import encryption_warning
from inbox.settings import Settings


def load_settings():
    """Settings from the environment; a bad value ends the command with exit code 2."""
    return Settings.from_env()


def warn_if_unencrypted(settings):
    """Say once on stderr when messages would be stored in clear (commands that store them)."""
    warning = encryption_warning(settings)
    if warning:
        click.echo(f"warning: {warning}", err=True)


@contextlib.contextmanager
def redis_for(settings):
    """Settings bound to a reachable Redis: the configured one, or an embedded one."""
    if os.environ.get("REDIS_URL"):
        yield settings
        return
    from cli.dev.embedded import EmbeddedRedis  # a development aid: not on a server's start-up path

    with EmbeddedRedis() as server:
        click.echo(f"REDIS_URL is not set: using an embedded redis-server on {server.url}", err=True)
        yield settings.replace(redis_url=server.url)
