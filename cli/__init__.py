"""The ``metriport-inbox`` command: one click group whose subcommands are entry points.

Each subcommand is declared in ``pyproject.toml`` under ``metriport_inbox.commands`` and lives in a
module of this package (one module per command family). The group imports only the command
being run, so a scheduled ``reconcile --once`` does not pay for Flask or gunicorn.

Every deliberate error (``inbox.errors.InboxError``) ends the command with one line,
``error: <code>: <sentence>``, and its exit code (2 for configuration), never a traceback. A
command line click refuses (an option out of range, a missing argument, an unknown command) ends
the same way, with code ``invalid_usage`` and click's exit code 2, so scripts parse one shape.
"""

import sys
from importlib.metadata import entry_points

import click

from inbox.errors import InboxError

GROUP = "metriport_inbox.commands"
#: the code of a command line that click refuses (see the module docstring)
USAGE_CODE = "invalid_usage"


class _EntryPointGroup(click.Group):
    """A group that finds its commands among the installed entry points, loading them lazily."""

    def _entry_points(self):
        return {ep.name: ep for ep in entry_points(group=GROUP)}

    def list_commands(self, ctx):
        return sorted(self._entry_points())

    def get_command(self, ctx, name):
        entry_point = self._entry_points().get(name)
        return entry_point.load() if entry_point else None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InboxError as exc:
            click.echo(f"error: {exc.code}: {exc.detail}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            click.echo(f"error: {USAGE_CODE}: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_EntryPointGroup)
@click.version_option(package_name="metriport-inbox", prog_name="metriport-inbox")
def main():
    """metriport-inbox: a complete, deduplicated Redis copy of your Metriport secure messages."""
