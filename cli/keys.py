"""``metriport-inbox keygen`` and ``rekey``: make a ring key, and move every record onto it."""

import click

from cli.environment import load_settings
from cli.environment import warn_if_unencrypted
from cli.environment import redis_for
from inbox.crypto import keygen as new_entry
from inbox.errors import DecryptionError
from inbox.rekey import DEFAULT_BATCH
from inbox.rekey import rekey as rekey_store
from inbox.store import Store


@click.command()
@click.option("--kid", default=None, help="Key id (1-16 of A-Za-z0-9_-); default k<date><hex>.")
def keygen(kid):
    """Print a new INBOX_ENCRYPTION_KEYS entry (kid:key). Needs no settings and no Redis."""
    try:
        entry = new_entry(kid)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--kid'") from None
    click.echo(entry)
    click.echo("Put it first in INBOX_ENCRYPTION_KEYS to encrypt with it; keep it secret.",
               err=True)


@click.command()
@click.option("--batch", default=DEFAULT_BATCH, show_default=True, type=click.IntRange(1, 10_000),
              help="Records read and rewritten per round trip.")
def rekey(batch):
    """Re-encrypt every stored record under the first key of INBOX_ENCRYPTION_KEYS.

    Safe while the service runs (once every process has the new ring) and resumable: run it
    again after an interruption. When it reports 0 busy and 0 failed, older keys can be removed.
    """
    settings = load_settings()
    warn_if_unencrypted(settings)
    with redis_for(settings) as settings:
        store = Store(settings)
        progress = rekey_store(store, batch=batch, on_batch=lambda p: click.echo(p.line()))
    if progress.resumed_after:
        click.echo(f"resumed after id {progress.resumed_after}")
    click.echo(progress.line().replace("rekey to", "done: rekey to", 1))
    if progress.busy:
        click.echo(f"{len(progress.busy)} records kept changing; run rekey again: "
                   + ", ".join(progress.busy[:20]), err=True)
    if progress.failed:
        listed = ", ".join(f"{i} ({code})" for i, code in progress.failed[:20])
        raise DecryptionError(f"{len(progress.failed)} records could not be opened: {listed}.")
