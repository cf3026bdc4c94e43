"""The installed ``metriport-inbox`` command refuses bad settings with one line and exit code 2."""

import os
import pathlib
import subprocess
import sys

import pytest

from cli.dev.embedded import free_port
from inbox.settings import _VARIABLES
from test_settings import BAD_SETTINGS
from test_settings import is_one_sentence

COMMAND = str(pathlib.Path(sys.executable).parent / "metriport-inbox")


def run_selfcheck(**environment):
    """Run ``metriport-inbox selfcheck`` with only ``environment`` among the project's variables."""
    env = {k: v for k, v in os.environ.items() if k not in {row[0] for row in _VARIABLES}}
    env.update(environment)
    return subprocess.run([COMMAND, "selfcheck"], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("variable, value", BAD_SETTINGS + [
    ("REDIS_URL", "redis+cluster://127.0.0.1:7000/0"),
])
def test_bad_setting_exits_2_with_one_sentence(variable, value):
    """Each bad setting ends the command with exit 2 and one ``error:`` line naming the variable."""
    finished = run_selfcheck(**{variable: value})
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    line = finished.stderr.strip()
    assert "\n" not in line
    prefix = "error: config_invalid: "
    assert line.startswith(prefix + variable + " ") or (
        line.startswith(prefix) and variable in line)
    assert is_one_sentence(line[len(prefix):])
    assert finished.stdout == ""


def test_good_settings_pass_selfcheck(redis_url):
    """With valid settings and a reachable Redis the self-check exits 0 and reports it."""
    finished = run_selfcheck(REDIS_URL=redis_url, INBOX_NAMESPACE="selfcheck-test")
    assert finished.returncode == 0, finished.stderr
    assert "redis: ok" in finished.stdout and "encryption: off" in finished.stdout


def test_unreachable_redis_fails_fast_without_traceback():
    """A REDIS_URL nobody listens on ends the self-check non-zero with a store_unavailable line."""
    finished = run_selfcheck(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert finished.returncode == 1
    # the last line: commands may warn first (no INBOX_ENCRYPTION_KEYS)
    assert finished.stderr.strip().splitlines()[-1].startswith("error: store_unavailable: ")
    assert "Traceback" not in finished.stderr
