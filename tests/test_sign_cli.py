"""``metriport-inbox sign FILE``: the signature curl needs, from the configured webhook key."""

import os
import subprocess
import sys

from conftest import FIXTURES
from conftest import TEST_WEBHOOK_KEY
from conftest import fixture_json

CLI = [sys.executable, "-c", "from cli import main; main()"]


def run(args, key=None, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "METRIPORT_WEBHOOK_KEY"}
    if key is not None:
        env["METRIPORT_WEBHOOK_KEY"] = key
    return subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, timeout=30, check=False
    )


def test_sign_prints_the_fixture_signatures():
    """For each signed fixture, sign prints exactly the signature Metriport would send."""
    signatures = fixture_json("webhook-signatures.json")["x-metriport-signature"]
    for name, signature in signatures.items():
        result = run(["sign", str(FIXTURES / name)], key=TEST_WEBHOOK_KEY)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode() == signature + "\n"


def test_sign_uses_the_first_key_and_reads_stdin():
    """With several keys the first signs; '-' signs the bytes on stdin."""
    body = (FIXTURES / "webhook-ping.json").read_bytes()
    result = run(["sign", "-"], key=f"{TEST_WEBHOOK_KEY},another-key", stdin=body)
    expected = fixture_json("webhook-signatures.json")["x-metriport-signature"]["webhook-ping.json"]
    assert result.stdout.decode().strip() == expected


def test_sign_without_a_key_is_a_config_error():
    """No METRIPORT_WEBHOOK_KEY: one error line with a reason code, exit 2, no traceback."""
    result = run(["sign", str(FIXTURES / "webhook-ping.json")])
    assert result.returncode == 2
    # the last line: every command may warn first (no INBOX_ENCRYPTION_KEYS)
    assert result.stderr.decode().splitlines()[-1] == (
        "error: no_webhook_key: METRIPORT_WEBHOOK_KEY is not set: there is no key to sign with."
    )
