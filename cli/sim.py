"""``metriport-inbox simulate`` and ``sign``: a local Metriport to point the service at, and the
signature of a body for trying the webhook with curl. See ``docs/simulator.md``.
"""

import signal

import click

from cli.environment import load_settings
from inbox import signing
from inbox.errors import ConfigError

_RATE = click.FloatRange(0.0, 1.0)


@click.command()
@click.option("--port", default=8089, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--seed", default=0, show_default=True, help="Same seed, same messages.")
@click.option("--messages", default=1000, show_default=True, type=click.IntRange(0, 1_000_000))
@click.option("--api-key", default="simulator-api-key", show_default=True, help="The x-api-key to require.")
@click.option("--rate-limit", default=0.0, type=_RATE, help="Fraction of API requests answered 429.")
@click.option("--server-errors", default=0.0, type=_RATE, help="Fraction answered with a transient 5xx.")
@click.option("--slow", default=0.0, type=_RATE, help="Fraction answered after a delay.")
@click.option("--delay-max", default=0.2, show_default=True, type=click.FloatRange(0.0, 30.0),
              help="Longest delay of a slow answer, in seconds.")
@click.option("--retry-after", default=1, show_default=True, type=click.IntRange(0, 3600),
              help="Retry-After seconds on a 429.")
@click.option("--webhook-url", default=None, help="Where webhooks go (also settable via /_simulator/webhooks).")
def simulate(port, seed, messages, api_key, rate_limit, server_errors, slow, delay_max, retry_after,
             webhook_url):
    """Run a local Metriport (message list/get, webhook settings, control API) in the foreground.

    Prints METRIPORT_API_URL and METRIPORT_API_KEY lines once it listens; stops on Ctrl-C or
    SIGTERM. Webhooks are signed with the first METRIPORT_WEBHOOK_KEY, if set.
    """
    from simulator import Faults
    from simulator import Simulator

    if rate_limit + server_errors > 1.0:
        raise click.BadParameter("--rate-limit plus --server-errors must not exceed 1.")
    settings = load_settings()
    faults = Faults(
        rate_limit=rate_limit,
        server_error=server_errors,
        slow=slow,
        delay_max=delay_max,
        retry_after=retry_after,
        seed=seed,
    )
    sim = Simulator(
        seed=seed,
        messages=messages,
        api_key=api_key,
        faults=faults,
        webhook_url=webhook_url,
        webhook_key=settings.webhook_keys[0] if settings.webhook_keys else None,
    )

    def ready(running):
        click.echo(f"Metriport simulator: {len(running.mailbox)} messages (seed {seed}), Ctrl-C to stop")
        click.echo(f"METRIPORT_API_URL={running.url}")
        click.echo(f"METRIPORT_API_KEY={running.api_key}", nl=True)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sim.serve_forever(port=port, ready=ready)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on 127.0.0.1:{port} ({exc.strerror}).", "port_unavailable") from exc
    except KeyboardInterrupt:
        click.echo("simulator stopped", err=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command()
@click.argument("file", type=click.File("rb"))
def sign(file):
    """Print the x-metriport-signature of FILE's exact bytes ('-' for stdin) under the first
    METRIPORT_WEBHOOK_KEY."""
    settings = load_settings()
    if not settings.webhook_keys:
        raise ConfigError("METRIPORT_WEBHOOK_KEY is not set: there is no key to sign with.", "no_webhook_key")
    click.echo(signing.sign(settings.webhook_keys[0], file.read()))
