"""``metriport-inbox demo`` as a user runs it: a subprocess on the embedded Redis."""

import os
import subprocess
import sys

import pytest

DEMO = [sys.executable, "-c", "from cli import main; main()", "demo", "--messages", "800"]


def run_demo(*extra):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "INBOX_NAMESPACE")}
    return subprocess.run([*DEMO, *extra], env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.chaos
def test_demo_repairs_what_webhooks_missed_and_ends_consistent():
    """Drops and duplicates are repaired: exit 0, a consistent verdict, and repairs counted."""
    done = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: CONSISTENT" in done.stdout
    repaired = next(line for line in done.stdout.splitlines() if "repaired by reconciliation" in line)
    assert int(repaired.split()[3]) > 0
    assert "Traceback" not in done.stderr


@pytest.mark.chaos
def test_demo_without_reconciliation_says_what_is_missing_and_fails():
    """With reconciliation off the dropped webhooks stay lost: exit 1 and the missing count."""
    done = run_demo("--no-reconcile")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verdict: INCONSISTENT" in done.stdout
    assert "missing from the store" in done.stdout
