"""Every Procfile line refuses a bad configuration with one sentence and a non-zero exit."""

import os
import subprocess

import pytest

import procfile
from cli.dev.embedded import free_port
from inbox.settings import _VARIABLES


def _run(name, **environment):
    env = {k: v for k, v in os.environ.items() if k not in {row[0] for row in _VARIABLES}}
    env.update(PATH=procfile.path(), PORT=str(free_port()), **environment)
    return subprocess.run(procfile.argv(name), env=env, cwd=procfile.ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_procfile_declares_web_worker_and_clock():
    assert set(procfile.lines()) == {"web", "worker", "clock"}


@pytest.mark.parametrize("name, environment, code", [
    ("web", {}, "config_invalid: METRIPORT_WEBHOOK_KEY"),
    ("web", {"METRIPORT_WEBHOOK_KEY": "k", "REDIS_URL": "foo://x"}, "config_invalid: REDIS_URL"),
    ("web", {"METRIPORT_WEBHOOK_KEY": "k", "RECONCILE_INTERVAL": "soon"},
     "config_invalid: RECONCILE_INTERVAL"),
    ("worker", {}, "config_invalid: METRIPORT_API_KEY"),
    ("worker", {"METRIPORT_API_KEY": "k", "REDIS_URL": "foo://x"}, "config_invalid: REDIS_URL"),
    ("clock", {}, "config_invalid: METRIPORT_API_KEY"),
    ("clock", {"METRIPORT_API_KEY": "k", "INBOX_ENCRYPTION_KEYS": "nonsense"},
     "config_invalid: INBOX_ENCRYPTION_KEYS"),
])
def test_bad_configuration_is_one_line_and_non_zero(name, environment, code):
    done = _run(name, **environment)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {code}"), done.stderr
    assert [line for line in done.stderr.splitlines()
            if not line.startswith(("error:", "warning:"))] == [], done.stderr
