"""``metriport-inbox serve``: gunicorn with the project's config, in the foreground."""

import http.client
import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from cli.dev.embedded import free_port
from conftest import TEST_WEBHOOK_KEY
from conftest import fixture_bytes
from inbox.signing import HEADER
from inbox.signing import sign
from servers import running

COMMAND = str(pathlib.Path(sys.executable).with_name("metriport-inbox"))

pytestmark = pytest.mark.chaos


def serve_env(redis_url, **changes):
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "INBOX_NAMESPACE": f"test-{uuid.uuid4().hex[:12]}",
        "METRIPORT_WEBHOOK_KEY": TEST_WEBHOOK_KEY,
    }
    env.update(changes)
    return {name: value for name, value in env.items() if value is not None}


def test_serve_answers_ping_and_stops_on_sigterm(redis_url, tmp_path):
    """serve --host --port --workers runs gunicorn that answers Metriport's ping, until SIGTERM."""
    port = free_port()
    argv = [COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with running(argv, serve_env(redis_url), port, tmp_path / "serve.log") as process:
        body = fixture_bytes("webhook-ping.json")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/webhook", body=body, headers={HEADER: sign(TEST_WEBHOOK_KEY, body)})
        answer = json.loads(conn.getresponse().read())
        conn.close()
        assert answer == {"pong": "Vb8kQ2_xLr7mZp3Nd9TsW"}
        process.terminate()
        assert process.wait(timeout=25) == 0
    log = (tmp_path / "serve.log").read_text()
    assert "Using worker: gevent" in log and f"127.0.0.1:{port}" in log
    # gevent patched the stdlib before the app was imported: no late-patching warning
    assert "MonkeyPatchWarning" not in log
    # one line per request, the receiver's own: gunicorn's access line would repeat it
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert not any(line["logger"] == "gunicorn.access" for line in lines)
    assert any(line.get("route") == "/webhook" for line in lines)


def test_serve_without_webhook_key_exits_2(redis_url):
    """Without METRIPORT_WEBHOOK_KEY serve refuses at once with one sentence, exit code 2."""
    env = serve_env(redis_url, METRIPORT_WEBHOOK_KEY=None)
    result = subprocess.run([COMMAND, "serve", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: config_invalid: METRIPORT_WEBHOOK_KEY")
