"""``metriport-inbox serve``: the receiver under gunicorn, in the foreground.

The command checks the configuration by building the app once (a missing webhook key ends it
with exit code 2 and one sentence), then replaces itself with gunicorn running
``receiver/gunicorn.conf.py``, so signals reach gunicorn directly. It uses ``REDIS_URL`` (default
``redis://localhost:6379/0``) and never starts an embedded Redis: a server process must not
depend on a private database that vanishes with it.
"""

import importlib.resources
import os
import sys

import click

from cli.environment import load_settings

APP = "receiver:create_app()"


@click.command()
@click.option("--host", help="Address to listen on [env HOST; default 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [env PORT; default 8000].")
@click.option(
    "--workers", type=click.IntRange(1, 64), help="Processes [env WEB_CONCURRENCY; default 2]."
)
def serve(host, port, workers):
    """Serve the webhook and the HTTP API with gunicorn until stopped (Ctrl-C, SIGTERM)."""
    from receiver import create_app

    settings = load_settings()
    create_app(settings)
    if not settings.encryption_on:
        click.echo(
            "warning: INBOX_ENCRYPTION_KEYS is not set: messages are stored in clear.", err=True
        )
    env = dict(os.environ)
    for name, value in (("HOST", host), ("PORT", port), ("WEB_CONCURRENCY", workers)):
        if value is not None:
            env[name] = str(value)
    config = importlib.resources.files("receiver").joinpath("gunicorn.conf.py")
    argv = [sys.executable, "-m", "gunicorn", "--config", str(config), APP]
    os.execve(sys.executable, argv, env)
