"""The Procfile's process lines, as tests run them: through ``sh -c`` like a platform does,
with ``HOST=0.0.0.0`` turned into ``HOST=127.0.0.1`` (tests bind loopback only).

The line runs as ``exec env <line>``: the shell still parses it (quotes, assignments), then
replaces itself with the command, so the pid the test holds is the process itself and SIGTERM
reaches it as it does when a platform signals the whole process group.
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def lines():
    """``{name: command}`` of every process line of the Procfile."""
    found = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            found[name.strip()] = command.strip().replace("HOST=0.0.0.0", "HOST=127.0.0.1")
    return found


def argv(name):
    """The argument list that runs process ``name`` as a platform would."""
    return ["sh", "-c", "exec env " + lines()[name]]


def path():
    """A PATH that finds this environment's ``gunicorn`` and ``metriport-inbox`` first."""
    return f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
