"""Command lines click refuses end like every other error: one ``error: <code>: <sentence>``
line and exit 2, before anything starts (no Redis, no simulator, no process)."""

import os
import pathlib
import subprocess
import sys

import pytest

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))


def run(*args):
    # An unreachable REDIS_URL: a refused command line must not get as far as connecting.
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    return subprocess.run([COMMAND, *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("args, sentence", [
    (["keygen", "--kid", "bad kid!"],
     "Invalid value for '--kid': A key id must be 1-16 characters of A-Z a-z 0-9 _ -."),
    (["demo", "--drop", "2"], "Invalid value for '--drop': 2.0 is not in the range 0<=x<=1."),
    (["demo", "--duplicate", "-1"],
     "Invalid value for '--duplicate': -1.0 is not in the range 0<=x<=1."),
    (["demo", "--messages", "0"], "Invalid value for '--messages': 0 is not in the range x>=1."),
    (["reconcile", "--direction", "sideways"], "Invalid value for '--direction': 'sideways' is not one of 'inbound', 'outbound'."),
    (["sign"], "Missing argument 'FILE'."),
    (["no-such-command"], "No such command 'no-such-command'."),
])
def test_refused_command_line_is_one_error_line_and_exit_2(args, sentence):
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: invalid_usage: {sentence}"]


def test_keygen_with_a_good_kid_prints_the_entry():
    done = run("keygen", "--kid", "k-2026_a")
    assert done.returncode == 0
    assert done.stdout.startswith("k-2026_a:")
