"""The command table the CLI loads its own commands from is the packaging's entry points."""

import pathlib
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points

import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


def test_the_table_is_the_entry_points_of_pyproject_and_of_the_installed_distribution():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][cli.GROUP]
    installed = {ep.name: ep.value for ep in entry_points(group=cli.GROUP)}
    assert cli.COMMANDS == declared == installed


def test_every_command_in_the_table_loads():
    group = cli.main
    for name in cli.COMMANDS:
        assert group.get_command(None, name).name == name


def test_a_command_run_from_the_table_does_not_scan_the_entry_points():
    # the start-up the table saves: `reconcile --help` goes through the same lookup as a run
    probe = ("import sys, importlib.metadata\n"
             "def refuse(**kw):\n    raise SystemExit('scanned')\n"
             "importlib.metadata.entry_points = refuse\n"
             "sys.argv = ['metriport-inbox', 'reconcile', '--help']\n"
             "try:\n    from cli import main; main()\n"
             "except SystemExit as exc:\n    print(exc.code)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0"


def test_help_still_lists_every_command():
    done = subprocess.run([COMMAND, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for name in cli.COMMANDS:
        assert name in done.stdout
