"""The systemd units in deploy/systemd/ (README: Deployment) load without a warning under
``systemd-analyze verify``, and each ExecStart is a command line the CLI accepts.

systemd cannot run as this test's init, so the units are verified, not started; the processes
they start are the Procfile's, which tests/ run for real. ``.ci/run`` installs systemd when
missing, so this test does not skip in CI.
"""

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/metriport-inbox/bin/"
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture
def units(tmp_path):
    """The units as installed, with this venv in place of /opt/metriport-inbox."""
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, f"{BIN}/"))
    return tmp_path


def exec_starts():
    for unit in sorted(UNITS.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                yield unit.name, shlex.split(line.removeprefix("ExecStart="))


def test_units_verify_clean(units):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (.ci/run does)"
    names = [str(units / name) for name in (
        "metriport-inbox-web.service", "metriport-inbox-worker@1.service",
        "metriport-inbox-clock.service", "metriport-inbox.target")]
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice"}
    result = subprocess.run([analyze, "verify", *names], capture_output=True, text=True,
                            timeout=60, env=env)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_target_starts_every_process_of_the_procfile():
    wants = next(line for line in (UNITS / "metriport-inbox.target").read_text().splitlines()
                 if line.startswith("Wants="))
    commands = {name: " ".join(argv[1:]) for name, argv in exec_starts()}
    assert commands == {"metriport-inbox-web.service": "serve",
                        "metriport-inbox-worker@.service": "worker",
                        "metriport-inbox-clock.service": "worker --cron"}
    for unit in ("web", "worker@1", "worker@2", "clock"):
        assert f"metriport-inbox-{unit}.service" in wants


@pytest.mark.parametrize("name, argv", list(exec_starts()))
def test_exec_start_is_a_command_line_the_cli_accepts(name, argv):
    assert argv[0] == INSTALLED + "metriport-inbox"
    done = subprocess.run([str(BIN / "metriport-inbox"), *argv[1:], "--help"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_units_run_unprivileged_and_read_one_environment_file():
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().splitlines()
        assert "DynamicUser=yes" in text and "NoNewPrivileges=yes" in text, unit.name
        assert "EnvironmentFile=/etc/metriport-inbox/env" in text, unit.name
